// Package testenv decides what a test does when the machine lacks a part
// it needs (Java and Maven for Apache Kafka, Chromium, a package from
// npm): on a developer's machine it skips, saying what is missing; in CI,
// which installs every part (.ci/run sets TAILOR_TEST_STRICT), it fails,
// so that a test CI is meant to run cannot pass by not running.
package testenv
