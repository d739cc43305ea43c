package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// checkMethod is the RPC ghz calls.
const checkMethod = "envoy.service.auth.v3.Authorization.Check"

// writeProtoset writes the descriptors of the ext_authz service and
// everything it imports, as compiled into this binary, to path (ghz
// --protoset). This spares ghz server reflection, so both servers run with
// the same services registered.
func writeProtoset(path string) error {
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd)) // dependencies first
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	b, err := proto.Marshal(&set)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// checkRequestJSON is one CheckRequest as ghz reads it (protobuf JSON): what
// Envoy sends for a typical API call, with the caller's bearer token.
func checkRequestJSON(jwt string, i int) map[string]any {
	return map[string]any{"attributes": map[string]any{
		"source":      map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "10.0.0.7", "portValue": 40000 + i%20000}}},
		"destination": map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "10.0.0.2", "portValue": 8080}}},
		"request": map[string]any{"http": map[string]any{
			"id":       strconv.Itoa(i),
			"method":   "GET",
			"path":     "/v1/items?limit=20",
			"host":     "api.bench.invalid",
			"scheme":   "https",
			"protocol": "HTTP/1.1",
			"headers": map[string]string{
				":authority":        "api.bench.invalid",
				":method":           "GET",
				":path":             "/v1/items?limit=20",
				":scheme":           "https",
				"accept":            "application/json",
				"user-agent":        "bench-client/1.0",
				"x-forwarded-proto": "https",
				"x-request-id":      fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
				"authorization":     "Bearer " + jwt,
			},
		}},
	}}
}

// writeData writes a JSON array of CheckRequests for ghz -D: ghz sends
// element (request number mod length) with each request, so consecutive
// requests go to consecutive elements and a run of len(msgs)*k requests
// uses every element k times.
func writeData(path string, msgs []map[string]any) error {
	b, err := json.Marshal(msgs)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// ghzRun describes one ghz invocation.
type ghzRun struct {
	bin         string
	protoset    string
	data        string
	target      string
	concurrency int
	requests    int
	connections int
	out         string // JSON report path
}

// ghzReport is the part of ghz's JSON report the harness reads.
type ghzReport struct {
	Count          uint64         `json:"count"`
	Total          time.Duration  `json:"total"`
	Rps            float64        `json:"rps"`
	ErrorDist      map[string]int `json:"errorDistribution"`
	StatusCodeDist map[string]int `json:"statusCodeDistribution"`
	Details        []struct {
		Timestamp time.Time     `json:"timestamp"` // when the call ended
		Latency   time.Duration `json:"latency"`
		Status    string        `json:"status"`
	} `json:"details"`
}

// loadFigures are one load run's client-side figures.
type loadFigures struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"` // RPCs that did not end with gRPC OK
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	P999ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	// GhzCPUPer1k is the load generator's own CPU time per 1000 requests:
	// on a small machine it competes with the server for the cores. The
	// load generator is ghz for the gRPC scenarios and the harness itself
	// (its HTTP client) for the HTTP ones.
	GhzCPUPer1k float64 `json:"ghz_cpu_seconds_per_1000_checks"`
	// Timeline is the run cut into intervals, for the plots (see
	// timeline.go).
	Timeline []interval `json:"timeline,omitempty"`

	began       time.Time     // when the first request was sent
	span, width time.Duration // of the timeline: the load's length, an interval's
	ghzCPU      float64       // seconds; 0 when inProcess
	wall        float64       // seconds, load start to end
	inProcess   bool          // the harness generated the load: its CPU is the load's
	failure     error         // the first failed request's error, if any
}

func (g ghzRun) run(ctx context.Context) (loadFigures, error) {
	args := []string{
		"--insecure",
		"--protoset", g.protoset,
		"--call", checkMethod,
		"--data-file", g.data,
		"--concurrency", strconv.Itoa(g.concurrency),
		"--total", strconv.Itoa(g.requests),
		"--connections", strconv.Itoa(g.connections),
		"--timeout", "30s",
		"--format", "json",
		"--output", g.out,
		g.target,
	}
	cmd := exec.CommandContext(ctx, g.bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start).Seconds()
	if err != nil {
		return loadFigures{}, fmt.Errorf("ghz: %w\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(g.out)
	if err != nil {
		return loadFigures{}, err
	}
	var r ghzReport
	if err := json.Unmarshal(b, &r); err != nil {
		return loadFigures{}, fmt.Errorf("ghz report %s: %w", g.out, err)
	}
	if len(r.Details) == 0 {
		return loadFigures{}, fmt.Errorf("ghz report %s has no request details", g.out)
	}
	lat := make([]time.Duration, len(r.Details))
	stamps := make([]stamp, len(r.Details))
	began := r.Details[0].Timestamp
	errs := 0
	for i, d := range r.Details {
		lat[i] = d.Latency
		stamps[i] = stamp{end: d.Timestamp, latency: d.Latency}
		if t := d.Timestamp.Add(-d.Latency); t.Before(began) {
			began = t
		}
		if d.Status != "OK" {
			errs++
		}
	}
	ghzCPU := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	lf := loadFigures{
		GhzCPUPer1k: math.Round(ghzCPU/float64(len(r.Details))*1e6) / 1e3,
		ghzCPU:      ghzCPU,
		wall:        wall,
		Errors:      errs,
		Seconds:     r.Total.Seconds(),
		RPS:         r.Rps,
	}
	lf.setLatencies(lat)
	lf.setTimeline(stamps, began)
	return lf, nil
}

// setLatencies sets the request count and the latency figures from every
// request's latency (lat is sorted in place).
func (lf *loadFigures) setLatencies(lat []time.Duration) {
	slices.Sort(lat)
	lf.Requests = len(lat)
	lf.P50ms = ms(percentile(lat, 50))
	lf.P99ms = ms(percentile(lat, 99))
	lf.P999ms = ms(percentile(lat, 99.9))
	lf.MaxMs = ms(lat[len(lat)-1])
}

// percentile is the nearest-rank percentile p of the sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	// The epsilon keeps 99.9% of 1000 at rank 999 despite floating point.
	rank := int(math.Ceil(p*float64(len(sorted))/100 - 1e-9))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
