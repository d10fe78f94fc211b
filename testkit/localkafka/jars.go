package localkafka

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
)

//go:embed pom.xml.tmpl log4j2.properties.tmpl log4j.properties.tmpl tools-log4j2.properties tools-log4j.properties
var assets embed.FS

var (
	pomTmpl    = template.Must(template.ParseFS(assets, "pom.xml.tmpl"))
	log4j2Tmpl = template.Must(template.ParseFS(assets, "log4j2.properties.tmpl"))
	log4j1Tmpl = template.Must(template.ParseFS(assets, "log4j.properties.tmpl"))
)

// Logging backends the broker classpath can end up with.
const (
	loggingLog4j2 = "log4j2" // Kafka 4.x: log4j-core + log4j-slf4j(2)-impl
	loggingLog4j1 = "log4j1" // Kafka 3.x: reload4j + slf4j-reload4j
)

// Versions of the logging binding added when the Kafka POM does not pin them
// (what the official tarballs ship, see ../../../shared/notes/kafka-from-maven.md).
const (
	fallbackLog4j2Version  = "2.24.3" // Kafka 4.0/4.1 tarballs
	reload4jVersion        = "1.2.25" // Kafka 3.9 tarball
	slf4jReload4jVersion   = "1.7.36" // Kafka 3.9 tarball
	completeMarkerFileName = ".whippet-complete"
)

var versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+([.-][0-9A-Za-z.-]+)?$`)

type mavenDep struct {
	Group, Artifact, Version string
	Exclusions               []mavenDep
}

type pomData struct {
	KafkaVersion string
	ArtifactID   string
	Deps         []mavenDep
}

// libsMarker is written into the libs dir once the classpath is complete.
type libsMarker struct {
	KafkaVersion string    `json:"kafka_version"`
	Logging      string    `json:"logging"`
	Jars         []string  `json:"jars"`
	ResolvedAt   time.Time `json:"resolved_at"`
}

// Classpath is a resolved broker classpath in the jar cache.
type Classpath struct {
	// Dir is the directory holding every jar of the broker classpath.
	Dir string
	// Logging is "log4j2" (Kafka 4.x) or "log4j1" (Kafka 3.x, reload4j).
	Logging string
	// Jars lists the jar file names in Dir.
	Jars []string
}

// Glob returns the java -cp argument for the classpath ("<dir>/*").
func (c Classpath) Glob() string { return filepath.Join(c.Dir, "*") }

// LibsDir returns the directory the jars of Kafka version are copied to:
// <cacheDir>/<version>/libs.
func LibsDir(cacheDir, version string) string {
	return filepath.Join(cacheDir, version, "libs")
}

// cachedClasspath returns the classpath if the libs dir is complete.
func cachedClasspath(cacheDir, version string) (Classpath, bool) {
	dir := LibsDir(cacheDir, version)
	b, err := os.ReadFile(filepath.Join(dir, completeMarkerFileName))
	if err != nil {
		return Classpath{}, false
	}
	var m libsMarker
	if json.Unmarshal(b, &m) != nil || len(m.Jars) == 0 || m.KafkaVersion != version {
		return Classpath{}, false
	}
	for _, j := range m.Jars {
		if _, err := os.Stat(filepath.Join(dir, j)); err != nil {
			return Classpath{}, false
		}
	}
	return Classpath{Dir: dir, Logging: m.Logging, Jars: m.Jars}, true
}

// EnsureJars makes sure the broker classpath of cfg.Version is in the jar
// cache, running Maven (mvn dependency:copy-dependencies against an embedded
// POM) when it is not. A complete cache is reused without running Maven.
// Concurrent callers (several test binaries) are serialized by a lock file.
func EnsureJars(ctx context.Context, cfg Config) (Classpath, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Classpath{}, err
	}
	if cp, ok := cachedClasspath(cfg.CacheDir, cfg.Version); ok {
		return cp, nil
	}
	verDir := filepath.Join(cfg.CacheDir, cfg.Version)
	if err := os.MkdirAll(verDir, 0o755); err != nil {
		return Classpath{}, fmt.Errorf("localkafka: create jar cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(verDir, ".lock"))
	if err != nil {
		return Classpath{}, fmt.Errorf("localkafka: lock jar cache %s: %w", verDir, err)
	}
	defer unlock()
	if cp, ok := cachedClasspath(cfg.CacheDir, cfg.Version); ok { // resolved while we waited
		return cp, nil
	}

	mvn, err := findMaven()
	if err != nil {
		return Classpath{}, err
	}
	start := time.Now()
	cfg.progress("localkafka: downloading Apache Kafka %s jars from Maven Central into %s ...", cfg.Version, verDir)

	tmp, err := os.MkdirTemp(verDir, "libs.tmp-")
	if err != nil {
		return Classpath{}, fmt.Errorf("localkafka: %w", err)
	}
	defer os.RemoveAll(tmp) // no-op after the rename below

	// Step 1: the broker and everything it declares at runtime scope.
	kafkaDep := mavenDep{Group: "org.apache.kafka", Artifact: "kafka_2.13", Version: cfg.Version,
		Exclusions: []mavenDep{ // a second SLF4J binding would win over ours at random
			{Group: "ch.qos.logback", Artifact: "*"},
			{Group: "org.slf4j", Artifact: "slf4j-log4j12"},
			{Group: "log4j", Artifact: "log4j"},
		}}
	if err := runCopyDependencies(ctx, mvn, verDir, "broker", pomData{
		KafkaVersion: cfg.Version, ArtifactID: "kafka-broker-classpath", Deps: []mavenDep{kafkaDep},
	}, tmp); err != nil {
		return Classpath{}, err
	}
	jars, err := listJars(tmp)
	if err != nil {
		return Classpath{}, err
	}

	// Step 2: the SLF4J binding the published POMs leave out, matched to what step 1 brought.
	logging, deps, err := loggingDeps(cfg.Version, jars)
	if err != nil {
		return Classpath{}, err
	}
	if len(deps) > 0 {
		if err := runCopyDependencies(ctx, mvn, verDir, "logging", pomData{
			KafkaVersion: cfg.Version, ArtifactID: "kafka-broker-logging", Deps: deps,
		}, tmp); err != nil {
			return Classpath{}, err
		}
		if jars, err = listJars(tmp); err != nil {
			return Classpath{}, err
		}
	}

	m := libsMarker{KafkaVersion: cfg.Version, Logging: logging, Jars: jars, ResolvedAt: time.Now().UTC()}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, completeMarkerFileName), b, 0o644); err != nil {
		return Classpath{}, fmt.Errorf("localkafka: write jar cache marker: %w", err)
	}
	dir := LibsDir(cfg.CacheDir, cfg.Version)
	if err := os.RemoveAll(dir); err != nil { // an incomplete earlier attempt
		return Classpath{}, fmt.Errorf("localkafka: clear incomplete %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return Classpath{}, fmt.Errorf("localkafka: install jars into %s: %w", dir, err)
	}
	cfg.progress("localkafka: %d jars for Apache Kafka %s resolved in %s (logging: %s)",
		len(jars), cfg.Version, time.Since(start).Round(100*time.Millisecond), logging)
	return Classpath{Dir: dir, Logging: logging, Jars: jars}, nil
}

func findMaven() (string, error) {
	p, err := exec.LookPath("mvn")
	if err != nil {
		return "", fmt.Errorf("%w: Maven (mvn) is not on PATH; it downloads the broker jars once (install Maven 3.x, or pre-fill the jar cache)", ErrNoMaven)
	}
	return p, nil
}

// runCopyDependencies writes the POM into dir and has Maven copy the runtime
// classpath into out.
func runCopyDependencies(ctx context.Context, mvn, dir, name string, data pomData, out string) error {
	var pom bytes.Buffer
	if err := pomTmpl.Execute(&pom, data); err != nil {
		return fmt.Errorf("localkafka: render pom: %w", err)
	}
	pomPath := filepath.Join(dir, "pom-"+name+".xml")
	if err := os.WriteFile(pomPath, pom.Bytes(), 0o644); err != nil {
		return fmt.Errorf("localkafka: write pom: %w", err)
	}
	cmd := exec.CommandContext(ctx, mvn, "-B", "-q", "-Dstyle.color=never", "-f", pomPath,
		"dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+out)
	cmd.Dir = dir
	outBuf, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("localkafka: mvn interrupted: %w", ctx.Err())
		}
		return fmt.Errorf("localkafka: mvn dependency:copy-dependencies for Apache Kafka %s (%s) failed: %w\n"+
			"(is Maven Central reachable, and does version %s exist? POM: %s)\n%s",
			data.KafkaVersion, name, err, data.KafkaVersion, pomPath, tail(string(outBuf), 30))
	}
	return nil
}

func listJars(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("localkafka: %w", err)
	}
	var jars []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".jar") {
			jars = append(jars, e.Name())
		}
	}
	sort.Strings(jars)
	if len(jars) == 0 {
		return nil, fmt.Errorf("localkafka: mvn copied no jars into %s", dir)
	}
	return jars, nil
}

// jarVersion returns the version of artifact among jar file names
// ("log4j-core-2.25.5.jar" -> "2.25.5").
func jarVersion(jars []string, artifact string) (string, bool) {
	for _, j := range jars {
		rest, ok := strings.CutPrefix(j, artifact+"-")
		if !ok || rest == "" || rest[0] < '0' || rest[0] > '9' {
			continue
		}
		return strings.TrimSuffix(rest, ".jar"), true
	}
	return "", false
}

// loggingDeps decides which logging backend the broker gets and which extra
// Maven artifacts that needs, given the jars the Kafka POM already brought.
//
//   - Kafka 4.x logs with log4j2. Recent 4.x POMs already bring log4j-api and
//     log4j-core (4.4.0: 2.25.5) but no SLF4J binding, so log4j-slf4j-impl
//     (or log4j-slf4j2-impl if slf4j-api is 2.x) of the same version is added;
//     POMs without log4j-core get log4j-core too, at the tarball's 2.24.3.
//   - Kafka 3.x logs with reload4j: slf4j-reload4j 1.7.36 + reload4j 1.2.25,
//     as in the 3.9 tarball.
func loggingDeps(version string, jars []string) (string, []mavenDep, error) {
	major, err := majorVersion(version)
	if err != nil {
		return "", nil, err
	}
	if major >= 4 {
		bridge := "log4j-slf4j-impl"
		if v, ok := jarVersion(jars, "slf4j-api"); ok && strings.HasPrefix(v, "2.") {
			bridge = "log4j-slf4j2-impl"
		}
		if _, ok := jarVersion(jars, bridge); ok {
			return loggingLog4j2, nil, nil
		}
		if v, ok := jarVersion(jars, "log4j-core"); ok {
			return loggingLog4j2, []mavenDep{{Group: "org.apache.logging.log4j", Artifact: bridge, Version: v}}, nil
		}
		v := fallbackLog4j2Version
		if api, ok := jarVersion(jars, "log4j-api"); ok {
			v = api
		}
		return loggingLog4j2, []mavenDep{
			{Group: "org.apache.logging.log4j", Artifact: bridge, Version: v},
			{Group: "org.apache.logging.log4j", Artifact: "log4j-core", Version: v},
		}, nil
	}
	if _, ok := jarVersion(jars, "slf4j-reload4j"); ok {
		return loggingLog4j1, nil, nil
	}
	return loggingLog4j1, []mavenDep{
		{Group: "org.slf4j", Artifact: "slf4j-reload4j", Version: slf4jReload4jVersion},
		{Group: "ch.qos.reload4j", Artifact: "reload4j", Version: reload4jVersion},
	}, nil
}

func majorVersion(version string) (int, error) {
	if !versionRE.MatchString(version) {
		return 0, fmt.Errorf("%w: %q (want e.g. %s or 3.9.1)", ErrBadVersion, version, DefaultVersion)
	}
	major, _, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrBadVersion, version)
	}
	if n < 3 {
		return 0, fmt.Errorf("%w: %q: KRaft from jars needs Apache Kafka 3.x or 4.x", ErrBadVersion, version)
	}
	return n, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailFile returns the last n lines of the file at path (reading at most the
// last 256 KiB), or a note saying why it could not.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "(no such file)"
		}
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	const limit = 256 << 10
	st, err := f.Stat()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	off := max(0, st.Size()-limit)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "(" + err.Error() + ")"
	}
	if len(buf) == 0 {
		return "(empty)"
	}
	return tail(string(buf), n)
}
