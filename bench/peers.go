package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// peerDir is where the peer programs live and buildDir where their builds
// go (bench/.gitignore keeps it out of git). Paths are relative to the
// repository root, where `make bench` runs.
const (
	peerDir  = "bench/peers"
	buildDir = "bench/.build"
)

// peer is one built peer program, or why it could not be built.
type peer struct {
	name    string
	version string
	argv    []string // command prefix; scenario flags follow
	err     error
}

type peers map[string]*peer

// peersOf names the peers each scenario runs.
var peersOf = map[string][]string{
	"S1": {greyhoundName},
	"S2": {"spring-retry", greyhoundName},
	"S3": {"parallel-consumer"},
	"S4": {"goka"},
	"S6": {"spring-batch"},
}

// buildPeers builds the peers the scenarios ids run: the Maven peers (mvn
// -q -B package, output under bench/.build/<name>), the goka peer (its own
// Go module) and Greyhound (from its source, see buildGreyhound). A peer
// that fails to build is reported as not available, with the reason,
// instead of stopping the run.
func buildPeers(ctx context.Context, ids []string) peers {
	need := map[string]bool{}
	for _, id := range ids {
		for _, p := range peersOf[id] {
			need[p] = true
		}
	}
	ps := peers{}
	for _, m := range []struct{ name, version string }{
		{"spring-retry", "org.springframework.kafka:spring-kafka 4.1.2 (@RetryableTopic, no Spring Boot)"},
		{"parallel-consumer", "io.confluent.parallelconsumer:parallel-consumer-core 0.5.3.3"},
		{"spring-batch", "org.springframework.kafka:spring-kafka 4.1.2 (batch @KafkaListener, AckMode.BATCH, no Spring Boot)"},
	} {
		if !need[m.name] {
			continue
		}
		p := &peer{name: m.name, version: m.version}
		ps[m.name] = p
		t0 := time.Now()
		pom := filepath.Join(peerDir, m.name, "pom.xml")
		if out, err := exec.CommandContext(ctx, "mvn", "-q", "-B", "package", "-f", pom).CombinedOutput(); err != nil {
			p.err = fmt.Errorf("mvn package -f %s: %w: %s", pom, err, lastLines(out, 5))
			fmt.Printf("   peer %-18s build FAILED: %v\n", m.name, p.err)
			continue
		}
		dir, err := filepath.Abs(filepath.Join(buildDir, m.name))
		if err != nil {
			p.err = err
			continue
		}
		cp := filepath.Join(dir, "classes") + string(os.PathListSeparator) + filepath.Join(dir, "lib", "*")
		p.argv = []string{"java", "-cp", cp}
		fmt.Printf("   peer %-18s built in %v\n", m.name, time.Since(t0).Round(time.Millisecond))
	}

	if need["goka"] {
		ps["goka"] = buildGoka(ctx)
	}
	if need[greyhoundName] {
		ps[greyhoundName] = buildGreyhound(ctx)
	}
	return ps
}

// buildGoka builds the goka peer, its own Go module, into bench/.build.
func buildGoka(ctx context.Context) *peer {
	p := &peer{name: "goka", version: "github.com/lovoo/goka v1.1.13 (IBM/sarama v1.41.3), in-memory view storage"}
	bin, err := filepath.Abs(filepath.Join(buildDir, "goka-peer"))
	if err == nil {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
		cmd.Dir = filepath.Join(peerDir, "goka")
		cmd.Env = append(os.Environ(), "GOWORK=off")
		var out []byte
		if out, err = cmd.CombinedOutput(); err != nil {
			err = fmt.Errorf("go build in %s: %w: %s", cmd.Dir, err, lastLines(out, 5))
		}
	}
	if err != nil {
		p.err = err
		fmt.Printf("   peer %-18s build FAILED: %v\n", "goka", err)
	} else {
		p.argv = []string{bin}
		fmt.Printf("   peer %-18s built\n", "goka")
	}
	return p
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// javaCmd is a Maven peer's command: the JVM with its system properties,
// then the main class.
func (p *peer) javaCmd(props map[string]string) *exec.Cmd {
	args := append([]string{}, p.argv[1:]...)
	for k, v := range props {
		args = append(args, fmt.Sprintf("-D%s=%s", k, v))
	}
	args = append(args, "bench.Main")
	return exec.Command(p.argv[0], args...)
}
