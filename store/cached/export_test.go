package cached

// IndexLen returns the number of tags in the index, for tests.
func (s *Store) IndexLen() int {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	return len(s.index)
}
