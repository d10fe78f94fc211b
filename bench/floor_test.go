package main

import (
	"strings"
	"testing"
	"time"
)

// S3's target line measures whippet against the ideal rate and names the Go
// floor; the floor is no peer, so it gets no "ahead/behind" line.
func TestS3TargetAgainstIdealAndFloor(t *testing.T) {
	rows := []*row{
		{scenario: "S3", contender: "whippet", rates: []float64{17_000, 17_600, 18_200}},
		{scenario: "S3", contender: "parallel-consumer", rates: []float64{16_000}},
		{scenario: "S3", contender: "go-floor", rates: []float64{19_000}},
	}
	tg := targets(rows, 20_000)
	for _, want := range []string{
		"- S3: whippet at 0.880× the ideal 20000 rec/s (target ≥ 0.9×): missed by 2.0%; the Go floor, S3's handler in plain goroutines without Kafka, ran at 0.950× the ideal, and whippet at 0.926× that floor.",
		"- S3 vs parallel-consumer: whippet ahead, 1.10×.",
	} {
		if !strings.Contains(tg, want) {
			t.Errorf("targets lack %q:\n%s", want, tg)
		}
	}
	if strings.Contains(tg, "vs go-floor") {
		t.Errorf("targets compare whippet with the floor as with a peer:\n%s", tg)
	}
	rows[0].rates = []float64{18_400}
	if tg := targets(rows, 20_000); !strings.Contains(tg, "(target ≥ 0.9×): met;") {
		t.Errorf("18,400 of 20,000 is met:\n%s", tg)
	}
}

// The floor runs the handler as often as asked, in the goroutines asked, and
// its rate cannot pass the ideal.
func TestS3FloorRunsTheHandler(t *testing.T) {
	res, err := s3Floor(contenderFlags{topic: "t", records: 400, concurrency: 20, handler: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 400 {
		t.Errorf("records %v, want 400", res.Records)
	}
	// 20 waves of 5 ms, timed from the end of the first: at least 19 × 5 ms.
	if res.Seconds < 0.095 {
		t.Errorf("took %.3fs: faster than 20 concurrent 5 ms sleeps allow", res.Seconds)
	}
	if _, err := s3Floor(contenderFlags{topic: "t", records: 10}); err == nil || !strings.Contains(err.Error(), "-concurrency") {
		t.Errorf("without -concurrency and -handler: %v", err)
	}
}
