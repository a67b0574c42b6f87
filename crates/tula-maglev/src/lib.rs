//! Maglev consistent hashing: weighted lookup tables for tula.
