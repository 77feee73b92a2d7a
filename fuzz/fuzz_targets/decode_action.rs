//! Arbitrary bytes into `Action::from_json`. Whatever decodes must validate without panicking
//! and survive serialise → decode unchanged.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use philo_events::Action;

fuzz_target!(|data: &[u8]| {
    let Ok(action) = Action::from_json(data) else {
        return;
    };
    let now = DateTime::from_timestamp(1_750_000_000, 0).expect("a valid timestamp");
    let _ = action.validate(now);
    let _ = action.referenced_ids();
    let bytes = serde_json::to_vec(&action).expect("an action serialises");
    let again = Action::from_json(&bytes).expect("a serialised action decodes");
    assert_eq!(again, action, "roundtrip changed the action");
});
