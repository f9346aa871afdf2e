//! Record batches (magic v2): parsing, validation and broker-side rewriting.
