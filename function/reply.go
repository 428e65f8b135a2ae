package function

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/scriptrun/scriptrun/function/run"
)

// newReply builds the run.completed event for result, with the given id.
// Every attribute comes from the run, none from the clock, so a redelivered
// request gets an identical reply that consumers can drop by id.
func (f *Function) newReply(id string, result run.Result) (*event.Event, error) {
	reply := event.New()
	reply.SetID(id)
	reply.SetType(f.cfg.ReplyType)
	reply.SetSource(f.cfg.ReplySource)
	reply.SetSubject(result.RequestID)
	if result.FinishedAt != nil {
		reply.SetTime(*result.FinishedAt)
	}
	if err := reply.SetData(event.ApplicationJSON, result); err != nil {
		return nil, fmt.Errorf("%w: encoding reply %s: %w", run.ErrInternal, id, err)
	}
	return &reply, nil
}

// rejectedReply builds the reply to a request whose data is invalid. Its run id derives
// from the requestId when it is valid, else from the event's source and id.
func (f *Function) rejectedReply(e event.Event, req run.Request, rejection *run.RejectedError) (*event.Event, error) {
	requestID := req.RequestID
	if rejection.Field == "requestId" || rejection.Field == "data" {
		requestID = ""
	}
	runID := run.ID(requestID, e.Source(), e.ID())
	if requestID == "" {
		requestID = runID
	}
	return f.newReply(rejectedReplyID(runID, e.Data()), run.Result{
		RequestID: requestID,
		Language:  req.Language,
		Status:    run.StatusRejected,
		Message:   rejection.Error(),
	})
}

// completedReplyID is the reply id of a run that ran. A rejection of the same
// run id has another id, so that consumers who drop duplicates by id never
// drop the run's result after an earlier rejection.
func completedReplyID(runID string) string { return runID + "-completed" }

// rejectedReplyID derives from the rejected data too, so each distinct
// invalid request gets its own id and each redelivery the same one.
func rejectedReplyID(runID string, data []byte) string {
	sum := sha256.Sum256(data)
	return runID + "-rejected-" + hex.EncodeToString(sum[:6])
}
