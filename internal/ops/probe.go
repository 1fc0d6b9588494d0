package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// DefaultProbeTimeout bounds a Probe when the caller gives no timeout.
const DefaultProbeTimeout = 3 * time.Second

// probeBodyLimit bounds what a Probe reads of an answer.
const probeBodyLimit = 4 << 10

// maxReason bounds the reason a Probe quotes from an answer, so its line
// stays one line a container runtime shows whole.
const maxReason = 300

// Probe GETs path from the server listening on listenAddr, as the
// binaries' healthcheck verb does inside their container (distroless
// images have no wget or curl). listenAddr is an HTTP_ADDR as the binaries
// take it: ":8080" and "0.0.0.0:8080" are probed on 127.0.0.1, "[::]:8080"
// on [::1], any other host as given. It returns one line, "healthy: …" or
// "unhealthy: …" with the reason (the failing checks of a 503 from
// /readyz, a refused connection, no answer within timeout), and whether
// the answer was 200. The whole probe is bounded by timeout
// (DefaultProbeTimeout when ≤ 0).
func Probe(ctx context.Context, listenAddr, path string, timeout time.Duration) (line string, healthy bool) {
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	u, err := probeURL(listenAddr, path)
	if err != nil {
		return "unhealthy: " + err.Error(), false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "unhealthy: " + err.Error(), false
	}
	// No proxy from the environment: the server is on this host.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctx.Err() != nil {
			return fmt.Sprintf("unhealthy: GET %s: no answer within %s", u, timeout), false
		}
		return fmt.Sprintf("unhealthy: GET %s: %v", u, err), false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, probeBodyLimit))
	if resp.StatusCode == http.StatusOK {
		return fmt.Sprintf("healthy: %s answered %s", u, resp.Status), true
	}
	line = fmt.Sprintf("unhealthy: %s answered %s", u, resp.Status)
	if reason := answerReason(body); reason != "" {
		line += ": " + reason
	}
	return line, false
}

// probeURL is the URL of path on the server listening on listenAddr.
func probeURL(listenAddr, path string) (string, error) {
	if listenAddr == "" {
		return "", errors.New("no listen address: the ops endpoints are off")
	}
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", listenAddr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// answerReason is why an answer says not ready, on one line: the failing
// checks of the worker's /readyz ({"ready": false, "failing": {name:
// reason}}), else the body's lines (the reference issuer's "not ready: …",
// one line per problem).
func answerReason(body []byte) string {
	var ready struct {
		Failing map[string]string `json:"failing"`
	}
	var reason string
	if json.Unmarshal(body, &ready) == nil && len(ready.Failing) > 0 {
		names := make([]string, 0, len(ready.Failing))
		for name := range ready.Failing {
			names = append(names, name)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, name := range names {
			parts[i] = name + ": " + ready.Failing[name]
		}
		reason = strings.Join(parts, "; ")
	} else {
		var lines []string
		for _, l := range strings.Split(string(body), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		reason = strings.Join(lines, "; ")
	}
	reason = strings.Join(strings.Fields(reason), " ")
	if r := []rune(reason); len(r) > maxReason {
		reason = string(r[:maxReason]) + "…"
	}
	return reason
}
