package testutil

import "runtime"

// LiveHeap returns the bytes and the number of live heap objects after a
// collection: the difference between two calls around building a structure
// is what it keeps alive, and its objects are what every garbage collection
// marks.
func LiveHeap() (bytes, objects uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.HeapObjects
}
