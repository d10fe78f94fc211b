package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// greyhoundSource is where Greyhound's source snapshot (wix/greyhound, MIT:
// core, future-interop, java-interop) lives, relative to the repository
// root. It is never copied into the repository: the harness stages a copy in
// a temporary directory for each build.
const greyhoundSource = "../shared/peers/greyhound"

// greyhoundSteps are the build-time steps applied to the staged copy (see
// SOURCE.md there and bench/RESULTS.md): zio-managed is not served, so the
// one file that needs it is left out and Producer.scala loses its unused
// import of it.
var greyhoundSteps = []struct {
	file, what string
	apply      func([]byte) ([]byte, bool) // the new content (nil: leave the file out), and whether the step applied
}{
	{"core/src/main/scala/com/wixpress/dst/greyhound/core/zioutils/AcquiredManagedResource.scala", "left out (needs zio-managed)",
		func([]byte) ([]byte, bool) { return nil, true }},
	{"core/src/main/scala/com/wixpress/dst/greyhound/core/producer/Producer.scala", "`import zio.managed._` dropped (unused)",
		func(b []byte) ([]byte, bool) {
			const imp = "import zio.managed._\n"
			return []byte(strings.Replace(string(b), imp, "", 1)), strings.Contains(string(b), imp)
		}},
}

// greyhoundModules are the source folders the build reads.
var greyhoundModules = []string{"core/src/main", "future-interop/src/main", "java-interop/src/main"}

// buildGreyhound builds bench/peers/greyhound (Greyhound's core and interop
// modules, then our driver) from a staged copy of greyhoundSource with
// greyhoundSteps applied. It skips Maven when neither the source nor the peer
// project changed since the last successful build (the first build takes
// about 6 minutes on 2 cores).
func buildGreyhound(ctx context.Context) *peer {
	p := &peer{name: greyhoundName, version: "wix/greyhound snapshot 385bb84 (2023-02-09), core built from source with Scala 2.12.20 and ZIO 2.0.21"}
	src, err := filepath.Abs(greyhoundSource)
	if err == nil {
		if _, serr := os.Stat(filepath.Join(src, "core")); serr != nil {
			err = fmt.Errorf("no Greyhound source at %s", greyhoundSource)
		}
	}
	if err != nil {
		p.err = err
		fmt.Printf("   peer %-18s not available: %v\n", greyhoundName, err)
		return p
	}
	dir, err := filepath.Abs(filepath.Join(buildDir, greyhoundName))
	if err != nil {
		p.err = err
		return p
	}
	p.argv = []string{"java", "-cp", filepath.Join(dir, "classes") + string(os.PathListSeparator) + filepath.Join(dir, "lib", "*")}
	stampFile := filepath.Join(dir, "inputs.sha256")
	stamp, err := greyhoundStamp(src)
	if err != nil {
		p.err, p.argv = err, nil
		return p
	}
	if old, rerr := os.ReadFile(stampFile); rerr == nil && string(old) == stamp {
		fmt.Printf("   peer %-18s up to date (source and bench/peers/greyhound unchanged)\n", greyhoundName)
		return p
	}
	t0 := time.Now()
	if err := mavenGreyhound(ctx, src); err != nil {
		p.err, p.argv = err, nil
		fmt.Printf("   peer %-18s build FAILED: %v\n", greyhoundName, err)
		return p
	}
	if err := os.WriteFile(stampFile, []byte(stamp), 0o644); err != nil {
		p.err, p.argv = err, nil
		return p
	}
	fmt.Printf("   peer %-18s built in %v\n", greyhoundName, time.Since(t0).Round(time.Second))
	return p
}

// mavenGreyhound stages the source with the build-time steps and runs Maven on it.
func mavenGreyhound(ctx context.Context, src string) error {
	tmp, err := os.MkdirTemp("", "whippet-bench-greyhound-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, m := range greyhoundModules {
		if err := copyTree(filepath.Join(src, m), filepath.Join(tmp, m)); err != nil {
			return fmt.Errorf("stage %s: %w", m, err)
		}
	}
	for _, s := range greyhoundSteps {
		path := filepath.Join(tmp, s.file)
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("build step on %s: %w", s.file, err)
		}
		out, ok := s.apply(b)
		if !ok {
			return fmt.Errorf("build step on %s (%s) no longer applies: has the source changed?", s.file, s.what)
		}
		if out == nil {
			err = os.Remove(path)
		} else {
			err = os.WriteFile(path, out, 0o644)
		}
		if err != nil {
			return err
		}
	}
	pom := filepath.Join(peerDir, greyhoundName, "pom.xml")
	out, err := exec.CommandContext(ctx, "mvn", "-q", "-B", "package", "-f", pom, "-Dgreyhound.src="+tmp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mvn package -f %s: %w: %s", pom, err, lastLines(out, 5))
	}
	return nil
}

// copyTree copies the regular files under from to to (BUILD.bazel files included; Maven ignores them).
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		target := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// greyhoundStamp hashes what the build reads: the source modules and the
// peer project (paths and contents), so that an unchanged build is skipped.
func greyhoundStamp(src string) (string, error) {
	h := sha256.New()
	roots := []string{filepath.Join(peerDir, greyhoundName)}
	for _, m := range greyhoundModules {
		roots = append(roots, filepath.Join(src, m))
	}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("incomplete Greyhound source: %w", err)
			}
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
