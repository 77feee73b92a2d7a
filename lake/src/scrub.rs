//! Free-text scrubbing (filled in by the scrubber work).
