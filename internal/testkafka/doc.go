// Package testkafka gives tests a Kafka broker: the real one named by
// TAILOR_TEST_BROKERS (make test starts Apache Kafka from Maven Central and
// sets it), or else an embedded kfake broker private to the test.
package testkafka
