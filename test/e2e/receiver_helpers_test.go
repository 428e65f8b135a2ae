//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"knative.dev/pkg/logging"

	"github.com/scriptrun/scriptrun/function"
	"github.com/scriptrun/scriptrun/function/receiver"
	"github.com/scriptrun/scriptrun/function/run"
)

// receiverRBAC is the deployment's RBAC file: the Role the receiver runs
// under in production, which the tests grant the receiver under test.
const receiverRBAC = "../../config/knative/base/receiver-rbac.yaml"

// receiverRole returns the rules of the receiver's Role in the deployment.
func receiverRole(t testing.TB) []rbacv1.PolicyRule {
	t.Helper()
	data, err := os.ReadFile(receiverRBAC)
	require.NoError(t, err)
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var role rbacv1.Role
		if err := decoder.Decode(&role); err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		if role.Kind == "Role" {
			require.NotEmpty(t, role.Rules)
			return role.Rules
		}
	}
	t.Fatalf("%s has no Role", receiverRBAC)
	return nil
}

// GrantReceiver creates a ServiceAccount in namespace bound to rules (the
// deployment's receiver Role when rules is nil) and returns the path of a
// kubeconfig that authenticates as it with a one-hour token. This is the
// identity the receiver has in production: not cluster-admin.
func GrantReceiver(t testing.TB, namespace string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	client := cluster.Client
	if rules == nil {
		rules = receiverRole(t)
	}
	const name = "scriptrun-receiver"

	_, err := client.CoreV1().ServiceAccounts(namespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = client.RbacV1().Roles(namespace).Create(ctx,
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = client.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: namespace}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	expiry := int64(3600)
	token, err := client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	return writeKubeconfig(t, cluster.Config.Host, token.Status.Token)
}

// writeKubeconfig writes a kubeconfig for server with a bearer token and the
// test cluster's CA, and returns its path.
func writeKubeconfig(t testing.TB, server, token string) string {
	t.Helper()
	caData := cluster.Config.CAData
	if len(caData) == 0 && cluster.Config.CAFile != "" {
		var err error
		caData, err = os.ReadFile(cluster.Config.CAFile)
		require.NoError(t, err)
	}
	config := clientcmdapi.NewConfig()
	config.Clusters["e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	config.AuthInfos["receiver"] = &clientcmdapi.AuthInfo{Token: token}
	config.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "receiver"}
	config.CurrentContext = "e2e"
	path := filepath.Join(t.TempDir(), "receiver.kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*config, path))
	return path
}

// ReceiverConfig returns the receiver configuration the tests start from:
// the Kubernetes runner in namespace with the given kubeconfig, and the
// production defaults otherwise.
func ReceiverConfig(namespace, kubeconfig string) function.Config {
	return function.Config{
		Port: 8080, Runner: function.RunnerKubernetes, Kubeconfig: kubeconfig, Namespace: namespace,
		RequestType: "run.requested", ReplyType: "run.completed", ReplySource: "/scriptrun/e2e",
		DefaultTimeoutSeconds: 30, MaxTimeoutSeconds: 300, WaitMarginSeconds: 30,
		MaxScriptBytes: 524288, MaxStdinBytes: 262144, MaxOutputBytes: 262144, MaxInFlight: 64,
		JobTTLSeconds: 300, ShutdownGraceSeconds: 30, KubeQPS: 50, KubeBurst: 100, LogLevel: "debug",
	}
}

// TestReceiver is a receiver served in this process on a loopback port.
type TestReceiver struct {
	URL      string
	Function *function.Function
	Receiver *receiver.Receiver
}

// StartReceiver starts the function and its HTTP receiver with cfg, waits
// until it is ready (its informers have synced) and stops it when the test
// ends. Its log goes to the test's log.
func StartReceiver(t testing.TB, cfg function.Config) *TestReceiver {
	t.Helper()
	ctx := logging.WithLogger(context.Background(), zaptest.NewLogger(t).Sugar())

	fn := function.NewWithConfig(cfg)
	require.NoError(t, fn.Start(ctx, nil))
	readyCtx := testContext(t, 30*time.Second)
	for {
		ready, _ := fn.Ready(readyCtx)
		if ready {
			break
		}
		select {
		case <-readyCtx.Done():
			t.Fatalf("the receiver did not become ready: its informers did not sync")
		case <-time.After(50 * time.Millisecond):
		}
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	recv := receiver.New(fn, receiver.Options{
		MaxBodyBytes:  cfg.MaxBodyBytes(),
		ShutdownGrace: time.Duration(cfg.ShutdownGraceSeconds) * time.Second,
		StatusFor:     function.HTTPStatus,
	})
	served := make(chan error, 1)
	go func() { served <- recv.Serve(ctx, listener) }()
	t.Cleanup(func() {
		_ = recv.Shutdown(context.Background())
		<-served
		_ = fn.Stop(context.Background())
	})
	return &TestReceiver{URL: "http://" + listener.Addr().String(), Function: fn, Receiver: recv}
}

// Reply is the receiver's HTTP response to one event.
type Reply struct {
	Status int
	Header http.Header
	Body   string
	// Result is the decoded run.completed data when Status is 200.
	Result run.Result
	// Elapsed is how long the request took.
	Elapsed time.Duration
}

// SendEvent posts data as a binary-mode run.requested event with the given
// id and returns the response. It fails the test only when the request
// cannot be sent. Call it from the test's goroutine, or use PostEvent.
func SendEvent(t testing.TB, url, eventID string, data any) Reply {
	t.Helper()
	reply, err := PostEvent(context.Background(), url, eventID, data)
	require.NoError(t, err)
	return reply
}

// PostEvent is SendEvent without testing.T, safe to call from goroutines.
func PostEvent(ctx context.Context, url, eventID string, data any) (Reply, error) {
	body, err := json.Marshal(data)
	if err != nil {
		return Reply{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Reply{}, err
	}
	req.Header = http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Type": {"run.requested"}, "Ce-Source": {"/scriptrun/e2e/tests"},
		"Ce-Id": {eventID}, "Content-Type": {"application/json"},
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("posting event %s: %w", eventID, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return Reply{}, fmt.Errorf("reading the answer to event %s: %w", eventID, err)
	}
	reply := Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(respBody), Elapsed: time.Since(start)}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(strings.NewReader(reply.Body)).Decode(&reply.Result); err != nil {
			return reply, fmt.Errorf("decoding the reply to event %s: %w: %s", eventID, err, reply.Body)
		}
	}
	return reply, nil
}
