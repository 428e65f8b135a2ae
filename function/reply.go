package function

import (
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/scriptrun/scriptrun/function/run"
)

// newReply builds the run.completed event for result. Every attribute comes
// from the run, none from the clock, so a redelivered request gets an
// identical reply that consumers can drop by id.
func (f *Function) newReply(runID string, result run.Result) (*event.Event, error) {
	reply := event.New()
	reply.SetID(runID + "-completed")
	reply.SetType(f.cfg.ReplyType)
	reply.SetSource(f.cfg.ReplySource)
	reply.SetSubject(result.RequestID)
	if result.FinishedAt != nil {
		reply.SetTime(*result.FinishedAt)
	}
	if err := reply.SetData(event.ApplicationJSON, result); err != nil {
		return nil, fmt.Errorf("%w: encoding reply for run %s: %w", run.ErrInternal, runID, err)
	}
	return &reply, nil
}

// rejectedReply answers a request whose data is invalid. Its run id derives
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
	return f.newReply(runID, run.Result{
		RequestID: requestID,
		Language:  req.Language,
		Status:    run.StatusRejected,
		Message:   rejection.Error(),
	})
}
