#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::spent::{ClaimError, Ledger, OWNER_LEN};
use super::*;

fn binding<'a>(subject: &'a str, tool: &'a str, arguments: &'a str) -> Binding<'a> {
    Binding {
        tenant: "acme",
        issuer: "https://issuer.test",
        subject,
        client: "claude",
        agent: "",
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
        Binding {
            client: "another-app",
            ..b
        },
        Binding { agent: "bot", ..b },
    ] {
        assert_eq!(
            rounds.open(&other, &token).unwrap_err(),
            StateError::Invalid
        );
    }
    // Another host key.
    assert_eq!(
        Rounds::ephemeral().unwrap().open(&b, &token).unwrap_err(),
        StateError::Invalid
    );
    // Refusals spent nothing: it opens for its own binding.
    assert_eq!(rounds.open(&b, &token).unwrap().pending, pending());
}

#[test]
fn tampered_truncated_and_junk_states_are_refused() {
    let rounds = Rounds::ephemeral().unwrap();
    let b = binding("alice", "t", "{}");
    let token = rounds.seal(&b, pending()).unwrap();
    let mut tampered = token.clone();
    tampered.push_str("-TAMPERED");
    assert_eq!(rounds.open(&b, &tampered).unwrap_err(), StateError::Invalid);
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
    assert_eq!(rounds.open(&b, &long).unwrap_err(), StateError::TooLong);
}

#[test]
fn states_expire() {
    let rounds = Rounds::ephemeral().unwrap().with_ttl(Duration::ZERO);
    let b = binding("alice", "t", "{}");
    let token = rounds.seal(&b, Pending::Connect).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(rounds.open(&b, &token).unwrap_err(), StateError::Expired);
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
    assert_eq!(b.open(&binding, &token).unwrap().pending, Pending::Connect);
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

#[test]
fn a_state_opens_once_unless_its_round_is_released() {
    let rounds = Rounds::ephemeral().unwrap();
    let b = binding("alice", "delete_note", r#"{"id":3}"#);
    let token = rounds.seal(&b, pending()).unwrap();
    let opened = rounds.open(&b, &token).unwrap();
    assert_eq!(rounds.open(&b, &token).unwrap_err(), StateError::Spent);
    // A round that did no work gives its state back, once.
    rounds.release(opened.ticket);
    let again = rounds.open(&b, &token).unwrap();
    assert_eq!(again.pending, pending());
    assert_eq!(rounds.open(&b, &token).unwrap_err(), StateError::Spent);
    // Another state of the same binding is its own.
    let other = rounds.seal(&b, pending()).unwrap();
    assert!(rounds.open(&b, &other).is_ok());
}

#[test]
fn racing_retries_with_one_state_let_exactly_one_through() {
    let dir = tempfile::tempdir().unwrap();
    let storage = crate::storage::Storage::open(&dir.path().join("db")).unwrap();
    let rounds = Rounds::ephemeral()
        .unwrap()
        .with_ledger(storage.tree("answered").unwrap());
    let b = binding("alice", "t", "{}");
    for _ in 0..20 {
        let token = rounds.seal(&b, pending()).unwrap();
        let opened = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| rounds.open(&b, &token).is_ok()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|ok| *ok)
                .count()
        });
        assert_eq!(opened, 1);
    }
}

#[test]
fn answered_states_stay_answered_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rounds.key");
    let b = binding("alice", "t", "{}");
    let token = {
        let storage = crate::storage::Storage::open(&dir.path().join("db")).unwrap();
        let rounds = Rounds::open_or_create(&key)
            .unwrap()
            .with_ledger(storage.tree("answered").unwrap());
        let token = rounds.seal(&b, pending()).unwrap();
        rounds.open(&b, &token).unwrap();
        token
    };
    let storage =
        crate::storage::Storage::open_waiting(&dir.path().join("db"), Duration::from_secs(10))
            .unwrap();
    let rounds = Rounds::open_or_create(&key)
        .unwrap()
        .with_ledger(storage.tree("answered").unwrap());
    assert_eq!(rounds.open(&b, &token).unwrap_err(), StateError::Spent);
}

#[test]
fn the_ledger_forgets_expired_states_and_caps_users_and_the_host() {
    // Entries outlive their state by the grace period (a clock stepped back
    // cannot reopen them).
    let grace = ROUND_TTL.as_secs();
    for stored in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::Storage::open(&dir.path().join("db")).unwrap();
        let tree = storage.tree("answered").unwrap();
        let ledger = if stored {
            Ledger::stored(tree.clone())
        } else {
            Ledger::memory()
        }
        .with_caps(4, 2);
        let ticket = |exp: u64, n: u8, user: u8| {
            Ticket::new(exp, &[n; NONCE_LEN], [user; OWNER_LEN]).unwrap()
        };
        // Two live entries fill a user's share; another user goes on until
        // the host's cap; a repeat is spent.
        ledger.claim(ticket(1_000, 0, 1), 500).unwrap();
        ledger.claim(ticket(1_000, 1, 1), 500).unwrap();
        assert_eq!(
            ledger.claim(ticket(1_000, 2, 1), 500),
            Err(ClaimError::Full)
        );
        assert_eq!(
            ledger.claim(ticket(1_000, 0, 1), 500),
            Err(ClaimError::Spent)
        );
        ledger.claim(ticket(1_000, 3, 2), 500).unwrap();
        ledger.claim(ticket(1_000, 4, 2), 500).unwrap();
        assert_eq!(
            ledger.claim(ticket(1_000, 5, 3), 500),
            Err(ClaimError::Full)
        );
        // Expired, but within the grace period: still remembered.
        assert_eq!(
            ledger.claim(ticket(1_000, 0, 1), 1_001 + grace / 2),
            Err(ClaimError::Spent)
        );
        // Past it they are dropped, and new states are taken.
        let later = 1_001 + grace;
        ledger.claim(ticket(9_000, 6, 1), later).unwrap();
        ledger.claim(ticket(9_000, 7, 1), later).unwrap();
        assert_eq!(
            ledger.claim(ticket(9_000, 8, 1), later),
            Err(ClaimError::Full)
        );
        // A released entry frees its place.
        ledger.release(ticket(9_000, 7, 1));
        ledger.claim(ticket(9_000, 8, 1), later).unwrap();
        if stored {
            // Reopened, the ledger counts what it holds.
            drop(ledger);
            let reopened = Ledger::stored(tree).with_caps(4, 2);
            assert_eq!(
                reopened.claim(ticket(9_000, 9, 1), later),
                Err(ClaimError::Full)
            );
            reopened.claim(ticket(9_000, 9, 2), later).unwrap();
        }
    }
}

#[test]
fn a_user_past_their_share_of_the_ledger_is_told_rounds_are_unavailable() {
    let rounds = Rounds::ephemeral().unwrap().with_spent_caps(10, 2);
    let alice = binding("alice", "t", "{}");
    let bob = binding("bob", "t", "{}");
    for _ in 0..2 {
        let token = rounds.seal(&alice, pending()).unwrap();
        rounds.open(&alice, &token).unwrap();
    }
    let third = rounds.seal(&alice, pending()).unwrap();
    assert_eq!(
        rounds.open(&alice, &third).unwrap_err(),
        StateError::Unavailable
    );
    // Bob is not held up by Alice.
    let token = rounds.seal(&bob, pending()).unwrap();
    assert!(rounds.open(&bob, &token).is_ok());
}
