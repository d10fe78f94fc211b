package testkit

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	ok := func() error { return nil }
	no := func() error { return errors.New("nope") }
	mustNotCall := func() error { t.Error("probe called although its answer does not matter"); return nil }
	brokers := []string{"127.0.0.1:9092"}

	for _, tc := range []struct {
		name          string
		env           environment
		docker, local func() error
		want          []Backend
		wantErr       string
	}{
		{"auto with KAFKA_BROKERS", environment{Brokers: brokers}, mustNotCall, mustNotCall, []Backend{BackendExternal}, ""},
		{"auto everything", environment{}, ok, ok, []Backend{BackendDocker, BackendLocal, BackendKfake}, ""},
		{"auto no docker", environment{Mode: "auto"}, no, ok, []Backend{BackendLocal, BackendKfake}, ""},
		{"auto nothing real", environment{}, no, no, []Backend{BackendKfake}, ""},
		{"auto CI no kfake", environment{CI: true}, no, ok, []Backend{BackendLocal}, ""},
		{"auto CI nothing real", environment{CI: true}, no, no, nil, "CI=true and no real Apache Kafka"},
		{"auto CI external", environment{CI: true, Brokers: brokers}, mustNotCall, mustNotCall, []Backend{BackendExternal}, ""},
		{"external", environment{Mode: "external", Brokers: brokers}, mustNotCall, mustNotCall, []Backend{BackendExternal}, ""},
		{"external without brokers", environment{Mode: "external"}, mustNotCall, mustNotCall, nil, "needs KAFKA_BROKERS"},
		{"docker", environment{Mode: "docker"}, ok, mustNotCall, []Backend{BackendDocker}, ""},
		{"docker unavailable", environment{Mode: "docker"}, no, mustNotCall, nil, "Docker cannot be used"},
		{"local", environment{Mode: "local", Brokers: brokers}, mustNotCall, ok, []Backend{BackendLocal}, ""},
		{"local unavailable", environment{Mode: "local"}, mustNotCall, no, nil, "cannot run here"},
		{"kfake", environment{Mode: "kfake"}, mustNotCall, mustNotCall, []Backend{BackendKfake}, ""},
		{"kfake in CI", environment{Mode: "kfake", CI: true}, mustNotCall, mustNotCall, nil, "not allowed with CI=true"},
		{"unknown", environment{Mode: "zookeeper"}, mustNotCall, mustNotCall, nil, "want auto, external"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := plan(tc.env, tc.docker, tc.local)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
			if tc.env.CI && slices.Contains(got, BackendKfake) {
				t.Fatal("kfake planned under CI")
			}
		})
	}
}

func TestReadEnv(t *testing.T) {
	t.Setenv("WHIPPET_KAFKA", " Local ")
	t.Setenv("KAFKA_BROKERS", "a:1, b:2,,")
	t.Setenv("CI", "true")
	e := readEnv()
	if e.Mode != "local" || !slices.Equal(e.Brokers, []string{"a:1", "b:2"}) || !e.CI {
		t.Fatalf("readEnv = %+v", e)
	}
	t.Setenv("CI", "false")
	if readEnv().CI {
		t.Fatal("CI=false read as CI")
	}
}

func TestDockerProbeFailsFastWithoutDocker(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	if err := dockerAvailable(t.Context()); err == nil {
		t.Fatal("docker reported available at a missing socket")
	}
	t.Setenv("DOCKER_HOST", "npipe:////./pipe/docker_engine")
	if err := dockerAvailable(t.Context()); err == nil {
		t.Fatal("unsupported DOCKER_HOST reported available")
	}
}

func TestDescribe(t *testing.T) {
	c := &Cluster{Brokers: []string{"127.0.0.1:29092"}, Backend: BackendLocal, Version: "4.4.0", Real: true, LogPath: "/x/server.log"}
	want := "whippet testkit: local Apache Kafka 4.4.0 at 127.0.0.1:29092 (log: /x/server.log)"
	if got := c.describe(); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	f := &Cluster{Brokers: []string{"127.0.0.1:1"}, Backend: BackendKfake, Version: "kfake"}
	if got := f.describe(); !strings.Contains(got, "not Apache Kafka") {
		t.Fatalf("kfake line hides that it is a fake: %q", got)
	}
}

func TestDockerNeedsItsModule(t *testing.T) {
	prev := registeredDocker()
	RegisterDocker(nil)
	t.Cleanup(func() { RegisterDocker(prev) })
	err := dockerUsable(t.Context())
	if !errors.Is(err, errNoDockerBackend) || !strings.Contains(err.Error(), "testkit/docker") {
		t.Fatalf("dockerUsable without the docker module = %v; want an error naming the module to import", err)
	}
	_, _, err = plan(environment{Mode: "docker"}, func() error { return dockerUsable(t.Context()) }, func() error { return nil })
	if err == nil || !strings.Contains(err.Error(), "testkit/docker") {
		t.Fatalf("WHIPPET_KAFKA=docker without the docker module: %v", err)
	}
}
