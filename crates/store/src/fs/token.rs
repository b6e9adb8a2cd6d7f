//! The fencing-token counter of a milestone.
//!
//! Every lock a user takes (`lock acquire`, `lock run`) draws the next
//! token of its milestone and records it in the lock (`LockInfo::token`);
//! a write carrying a token passes only while that token is the newest and
//! its lock is still there and within its TTL (see [`super::lock`]). The
//! newest token is kept, like the revision record (see [`super::revision`]),
//! as the *name* of an empty file beside the locks: `.locks/.<id>.token.<N>`.
//!
//! Guarantees:
//! - it never goes back: it moves by one `rename` to a higher name, and the
//!   `.locks/` directory is synced before the lock that drew the token is
//!   reported taken, so a token handed out survives a crash; a token drawn
//!   by an acquisition that crashed before the sync was never reported, and
//!   may be drawn again;
//! - removing lock directories (`rm -rf .locks/*.lock`, the seed's release,
//!   a forced release) leaves it alone: ids never start with `.`, so the
//!   record is no lock, and a shell's `*` does not match it;
//! - tokens are drawn only under the exclusive `flock` of `.locks/` (the
//!   one breakers of stale locks take), so two acquisitions never draw the
//!   same token.
//!
//! Limits: the locks mstate takes for one write (a `save` without `lock
//! acquire`) and the seed's locks carry no token; a write with a token is
//! refused under them ([`crate::error::TokenRefusal::Released`]).

use crate::error::Result;
use crate::fs::layout::Layout;
use crate::fs::revision::{self, Record};
use crate::id::MilestoneId;
use crate::io::Io;

/// The kind of mark the token counter is (`.<id>.token.<N>`).
const TOKEN: &str = "token";

/// The counter's name at token `n` of `id`.
pub fn record_name(id: &MilestoneId, n: u64) -> String {
    revision::mark_name(id, TOKEN, n)
}

/// Whether `name` (in `.locks/`) is the token counter of any milestone.
pub fn is_record(name: &str) -> bool {
    revision::is_mark(TOKEN, name)
}

/// The counter of `id` (`high` 0: no token was ever drawn). `.locks/` is
/// listed each time: a fenced check must see the highest name, even one
/// copied in beside another.
pub fn read(io: &dyn Io, layout: &Layout, id: &MilestoneId) -> Result<Record> {
    revision::read_marks(io, &layout.locks(), id, TOKEN, None)
}

/// Move the counter of `id` to `n`. The caller syncs `.locks/` before it
/// hands the token out.
pub fn advance(io: &dyn Io, layout: &Layout, id: &MilestoneId, rec: &Record, n: u64) -> Result<()> {
    revision::advance_mark(io, &layout.locks(), id, TOKEN, rec, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_neither_locks_nor_revision_records() {
        let a = MilestoneId::new("a").unwrap();
        let name = record_name(&a, 7);
        assert_eq!(name, ".a.token.7");
        assert!(is_record(&name));
        assert!(!revision::is_record(&name));
        assert!(!is_record(&revision::record_name(&a, 7)));
        assert!(!is_record("a.lock"));
        assert!(!is_record(".tmp-12-ab-0"));
        assert_eq!(revision::parse_mark(&a, TOKEN, &name), Some(7));
        let dotted = MilestoneId::new("a.token.3").unwrap();
        assert_eq!(
            revision::parse_mark(&a, TOKEN, &record_name(&dotted, 1)),
            None
        );
    }
}
