// Package browsertest holds the browser tests of whippet's web pages: each
// page is driven in a headless Chromium (chromedp) against a real Apache
// Kafka broker (testkit), and a test fails on any error the page logs: the
// consumer/admin dashboard, and the contacts-import page of examples/imports
// (with the example's services, package examples/imports/app).
//
// It is a module of its own so that chromedp never enters the library's
// module graph. The tests need a Chromium (or Chrome) on PATH, or its path in
// $WHIPPET_CHROMIUM (make chromium installs Debian's); without one they are
// skipped, unless CI=true, where they fail. make test runs them; alone:
//
//	make kafka-up && set -a && source .kafka/env && set +a
//	go test -count=1 ./internal/browsertest/...
//
// Screenshots of each page are kept with go test -artifacts -outputdir DIR.
//
// The package has no code of its own.
package browsertest
