package sink

// Group is the consumer group the sink commits its offsets in.
func (s *Sink) Group() string { return s.cfg.Group }
