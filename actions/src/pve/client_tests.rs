//! Unit tests of the client's retry decisions.

use super::*;

#[test]
fn a_certificate_mismatch_is_not_retried_a_refused_connection_is() {
    let e = PveError::Shape {
        path: "/".into(),
        message: String::new(),
    };
    let mismatch = Failure::Certificate(tls::FingerprintMismatch {
        got: "AA".into(),
        pinned: "BB".into(),
    });
    assert!(!mismatch.retryable(true, &e));
    assert!(Failure::NotSent("refused".into()).retryable(false, &e));
    assert!(!Failure::Lost("reset".into()).retryable(false, &e));
    assert!(Failure::Lost("reset".into()).retryable(true, &e));
}
