// Package docker adds testkit's Docker backend: Apache Kafka in a container
// started with testcontainers-go. It is a module of its own so that services
// importing whippet or testkit never pull testcontainers and the Docker
// client into their module graph. Import it for its side effect:
//
//	import _ "github.com/whippet-go/whippet/testkit/docker"
//
// Then testkit's auto mode tries Docker (when an engine answers) before
// Kafka from Maven jars, and WHIPPET_KAFKA=docker selects it.
// WHIPPET_KAFKA_IMAGE overrides the image (default apache/kafka:<KAFKA_VERSION>,
// KAFKA_VERSION defaulting to localkafka.DefaultVersion).
package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/whippet-go/whippet/testkit"
	"github.com/whippet-go/whippet/testkit/localkafka"
)

func init() { testkit.RegisterDocker(start) }

// The docker backend is not exercised on the machines this was written on
// (no Docker engine there); it follows testcontainers-go v0.40.0's kafka
// module, whose own start script only fits confluentinc/confluent-local
// images. For the official apache/kafka images (whose entrypoint is
// /etc/kafka/docker/run and which need CLUSTER_ID) we keep the module's
// environment, port and quorum setup, and replace its start script and hook.

const (
	dockerPublicPort  = "9093/tcp"
	dockerStartScript = "/tmp/whippet_kafka_start.sh"
)

var dockerVersionRE = regexp.MustCompile(`Kafka version: (\S+)`)

func dockerImage() string {
	if img := strings.TrimSpace(os.Getenv("WHIPPET_KAFKA_IMAGE")); img != "" {
		return img
	}
	v := strings.TrimSpace(os.Getenv("KAFKA_VERSION"))
	if v == "" {
		v = localkafka.DefaultVersion
	}
	return "apache/kafka:" + v
}

func start(ctx context.Context) (*testkit.DockerCluster, error) {
	img := dockerImage()
	var opts []testcontainers.ContainerCustomizer
	if strings.Contains(img, "apache/kafka") { // apache/kafka and apache/kafka-native
		opts = append(opts,
			tckafka.WithClusterID("5L6g3nShT-eMCtK--X86sw"),
			testcontainers.WithEnv(map[string]string{
				"KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS":             "1",
				"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
				"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR":            "1",
			}),
			testcontainers.WithCmd("-c", "while [ ! -f "+dockerStartScript+" ]; do sleep 0.1; done; exec bash "+dockerStartScript),
			testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
				PostStarts: []testcontainers.ContainerHook{startApacheKafka},
			}),
		)
	}
	ctr, err := tckafka.Run(ctx, img, opts...)
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		return nil, fmt.Errorf("start %s: %w", img, err)
	}
	stop := func(ctx context.Context) error { return ctr.Terminate(ctx) }
	brokers, err := ctr.Brokers(ctx)
	if err != nil {
		_ = stop(context.Background())
		return nil, fmt.Errorf("%s started but gave no broker address: %w", img, err)
	}
	version := ""
	if rc, err := ctr.Logs(ctx); err == nil {
		b, _ := io.ReadAll(io.LimitReader(rc, 8<<20))
		rc.Close()
		if m := dockerVersionRE.FindSubmatch(b); m != nil {
			version = string(m[1])
		}
	}
	if version == "" {
		_, tag, _ := strings.Cut(img, ":")
		version = tag
	}
	return &testkit.DockerCluster{Brokers: brokers, Version: version, LogHint: "docker logs " + ctr.GetContainerID(), Stop: stop}, nil
}

// startApacheKafka advertises the host-mapped port and runs the image's own
// entrypoint, then waits for the broker's start-up line.
func startApacheKafka(ctx context.Context, c testcontainers.Container) error {
	if err := wait.ForMappedPort(dockerPublicPort).WaitUntilReady(ctx, c); err != nil {
		return fmt.Errorf("wait for mapped port: %w", err)
	}
	endpoint, err := c.PortEndpoint(ctx, dockerPublicPort, "PLAINTEXT")
	if err != nil {
		return fmt.Errorf("port endpoint: %w", err)
	}
	inspect, err := c.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	script := fmt.Sprintf("#!/bin/bash\nexport KAFKA_ADVERTISED_LISTENERS=%s,BROKER://%s:9092\nexec /etc/kafka/docker/run\n",
		endpoint, inspect.Config.Hostname)
	if err := c.CopyToContainer(ctx, []byte(script), dockerStartScript, 0o755); err != nil {
		return fmt.Errorf("copy start script: %w", err)
	}
	return wait.ForLog("Kafka Server started").WithStartupTimeout(3*time.Minute).WaitUntilReady(ctx, c)
}
