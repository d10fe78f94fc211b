package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// S7: the WebSocket gateway (package notify) under load. The figures come
// from notify's own load benchmark (notify/load_test.go,
// BenchmarkGatewayLoad), which checks that every notification reaches every
// socket of its channel exactly once and in order; the harness builds its
// test binary once and runs it against the harness's broker. No peer runs
// here: no library in any language has this shape (Kafka topic → channel
// fan-out → WebSocket, with resume).

// gatewayBench is the benchmark that S7 runs.
const gatewayBench = "BenchmarkGatewayLoad"

// buildNotifyTest builds notify's test binary into buildDir, from the
// repository root (the harness's working directory).
func buildNotifyTest(ctx context.Context) (string, error) {
	bin, err := filepath.Abs(filepath.Join(buildDir, "notify.test"))
	if err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./notify/").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go test -c ./notify/: %w: %s", err, lastLines(out, 5))
	}
	return bin, nil
}

// gatewayFigures are the metrics BenchmarkGatewayLoad reports.
type gatewayFigures struct {
	rate, p50, p99, bytesPerConn float64 // notifications/s, ms, ms, B
}

// parseGatewayBench reads the figures from the benchmark's result line,
// "BenchmarkGatewayLoad-2 <tab> 1 <tab> 3981337533 ns/op <tab> 48947 B/conn
// ...": after the name and the iterations, pairs of value and unit.
func parseGatewayBench(out []byte) (gatewayFigures, error) {
	var line string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// The benchmark's own lines (printed first) name no benchmark; the
		// result line starts with the name (after any output without a newline).
		if i := strings.Index(sc.Text(), gatewayBench); i >= 0 && strings.Contains(sc.Text(), "ns/op") {
			line = sc.Text()[i:]
		}
	}
	if line == "" {
		return gatewayFigures{}, fmt.Errorf("no %s result line", gatewayBench)
	}
	f := strings.Fields(line)
	if len(f) < 2 || len(f)%2 != 0 {
		return gatewayFigures{}, fmt.Errorf("result line %q: want the name, the iterations, then value-unit pairs", line)
	}
	metrics := map[string]float64{}
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return gatewayFigures{}, fmt.Errorf("result line %q: %w", line, err)
		}
		metrics[f[i+1]] = v
	}
	var g gatewayFigures
	for _, m := range []struct {
		unit string
		to   *float64
	}{{"notifications/s", &g.rate}, {"p50-ms", &g.p50}, {"p99-ms", &g.p99}, {"B/conn", &g.bytesPerConn}} {
		v, ok := metrics[m.unit]
		if !ok {
			return gatewayFigures{}, fmt.Errorf("result line %q: no %s", line, m.unit)
		}
		*m.to = v
	}
	if g.rate <= 0 {
		return gatewayFigures{}, fmt.Errorf("result line %q: no notifications/s", line)
	}
	return g, nil
}

// s7Gateway runs notify's test binary (f.binary) once, as
// "-test.bench BenchmarkGatewayLoad -test.benchtime 1x" with S7's sizes,
// against f.brokers, and turns its figures into a result: f.records
// notifications over the time that makes records/s the benchmark's
// notifications/s.
//
// Peak RSS is the test process's ru_maxrss, which wait4 reports. It runs
// as this small process's child, not the harness's: a child started with
// vfork and exec carries its parent's high-water mark (see result), so
// the figure is the larger of this process's resident set when it starts
// the benchmark (a few MiB) and the benchmark's own peak.
func s7Gateway(ctx context.Context, f contenderFlags) (result, error) {
	if f.binary == "" || f.clients <= 0 || f.channels <= 0 {
		return result{}, errors.New("contender: S7 needs -binary, -clients and -channels")
	}
	cmd := exec.CommandContext(ctx, f.binary, "-test.run", "^$", "-test.bench", "^"+gatewayBench+"$", "-test.benchtime", "1x",
		"-notify.clients", strconv.Itoa(f.clients), "-notify.channels", strconv.Itoa(f.channels),
		"-notify.notifications", strconv.Itoa(f.records))
	// testkit.Shared takes the broker named by KAFKA_BROKERS (later entries win).
	cmd.Env = append(os.Environ(), "WHIPPET_KAFKA=external", "KAFKA_BROKERS="+f.brokers)
	// The harness kills this process at its run timeout; the benchmark goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, os.Stderr) // the run's log; stdout carries only the result line
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%s: %w: %s", filepath.Base(f.binary), err, lastLines(out.Bytes(), 5))
	}
	g, err := parseGatewayBench(out.Bytes())
	if err != nil {
		return result{}, err
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss // kB on Linux
	}
	return result{Records: float64(f.records), Seconds: float64(f.records) / g.rate, P50: &g.p50, P99: &g.p99,
		PeakRSS: rss, Extra: map[string]any{"bytes_per_conn": g.bytesPerConn}}, nil
}
