// Package dataset turns real data sets into Segment events for benchmarks
// and end-to-end checks, and computes from the raw data, independently of
// the engine, the facts the engine must arrive at.
//
// The UCI Online Retail data set (Daqing Chen, London South Bank
// University; CC BY 4.0) is a UK online retailer's invoice lines from
// 2010-12-01 to 2011-12-09.
package dataset
