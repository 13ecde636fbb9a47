#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

fn binding<'a>(subject: &'a str, tool: &'a str, arguments: &'a str) -> Binding<'a> {
    Binding {
        tenant: "acme",
        issuer: "https://issuer.test",
        subject,
        tool,
        component: "c0ffee",
        arguments,
    }
}

fn pending() -> Pending {
    Pending::Tool {
        keys: vec!["confirm".into()],
        state: Some(b"note 3".to_vec()),
    }
}

#[test]
fn a_state_opens_for_its_binding_only() {
    let rounds = Rounds::ephemeral().unwrap();
    let b = binding("alice", "delete_note", r#"{"id":3}"#);
    let token = rounds.seal(&b, pending()).unwrap();
    assert_eq!(rounds.open(&b, &token).unwrap(), pending());
    // Another user, tool, argument set or tenant: refused alike.
    for other in [
        binding("bob", "delete_note", r#"{"id":3}"#),
        binding("alice", "list_notes", r#"{"id":3}"#),
        binding("alice", "delete_note", r#"{"id":4}"#),
        Binding {
            tenant: "globex",
            ..b
        },
        Binding {
            issuer: "https://other.test",
            ..b
        },
        Binding {
            component: "a new version",
            ..b
        },
    ] {
        assert_eq!(rounds.open(&other, &token), Err(StateError::Invalid));
    }
    // Another host key.
    assert_eq!(
        Rounds::ephemeral().unwrap().open(&b, &token),
        Err(StateError::Invalid)
    );
}

#[test]
fn tampered_truncated_and_junk_states_are_refused() {
    let rounds = Rounds::ephemeral().unwrap();
    let b = binding("alice", "t", "{}");
    let token = rounds.seal(&b, pending()).unwrap();
    let mut tampered = token.clone();
    tampered.push_str("-TAMPERED");
    assert_eq!(rounds.open(&b, &tampered), Err(StateError::Invalid));
    for i in 3..token.len() {
        let mut flipped: Vec<u8> = token.clone().into_bytes();
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        if flipped != token {
            assert!(rounds.open(&b, &flipped).is_err(), "byte {i}");
        }
    }
    for junk in [
        "",
        "r1",
        "r1.",
        "r1.AAAA",
        "r2.AAAA",
        "x",
        &token[..token.len() / 2],
    ] {
        assert!(rounds.open(&b, junk).is_err(), "{junk:?}");
    }
    let long = "r1.".to_string() + &"A".repeat(MAX_REQUEST_STATE);
    assert_eq!(rounds.open(&b, &long), Err(StateError::TooLong));
}

#[test]
fn states_expire() {
    let rounds = Rounds::ephemeral().unwrap().with_ttl(Duration::ZERO);
    let b = binding("alice", "t", "{}");
    let token = rounds.seal(&b, Pending::Connect).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(rounds.open(&b, &token), Err(StateError::Expired));
}

#[test]
fn the_state_is_not_readable_by_the_client() {
    let rounds = Rounds::ephemeral().unwrap();
    let b = binding("alice", "t", "{}");
    let token = rounds
        .seal(
            &b,
            Pending::Tool {
                keys: vec!["k".into()],
                state: Some(b"SECRET-TOOL-STATE".to_vec()),
            },
        )
        .unwrap();
    let raw = B64URL.decode(&token[3..]).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"SECRET"));
    assert!(!token.contains("SECRET"));
}

#[test]
fn the_key_file_is_created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/round.key");
    let a = Rounds::open_or_create(&path).unwrap();
    let b = Rounds::open_or_create(&path).unwrap();
    let binding = binding("alice", "t", "{}");
    let token = a.seal(&binding, Pending::Connect).unwrap();
    assert_eq!(b.open(&binding, &token).unwrap(), Pending::Connect);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&path, b"short").unwrap();
    let err = Rounds::open_or_create(&path).unwrap_err().to_string();
    assert!(err.contains("is not 32 bytes"), "{err}");
}
