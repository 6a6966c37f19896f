//! The coordinator core's event handling on arbitrary event sequences (issue 7): proxies that
//! register with made-up streams, name proxies they were never assigned, report impossible
//! counts and rates, speak after being declared crashed, and viewers, resolves and time in
//! between. After every event the core has not panicked and `Coordinator::audit` holds (the tree
//! consistent and acyclic, the accounting exact, the state bounded by the input);
//! `control::core::fuzzing` decodes the bytes and drives the core.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    control::core::fuzzing::run(data);
});
