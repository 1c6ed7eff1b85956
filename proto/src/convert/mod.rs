//! Conversions between the wire messages and the domain types of
//! watchtower-model, field by field both ways: every field is named, so a field
//! added to a message and not to its domain type (or the other way) does not
//! compile. Enumerations travel as their codes; a code this build does not know
//! is kept (`Unknown`), so a record converts back to the bytes' meaning it came
//! with.

mod event;
mod records;
#[cfg(test)]
mod tests;

use watchtower_model as model;

use crate::pb;

impl From<pb::event::Body> for model::Body {
    fn from(m: pb::event::Body) -> Self {
        use pb::event::Body as B;
        match m {
            B::LoginAttempt(b) => Self::LoginAttempt(b.into()),
            B::SessionStart(b) => Self::SessionStart(b.into()),
            B::SessionEnd(b) => Self::SessionEnd(b.into()),
            B::Exec(b) => Self::Exec(b.into()),
            B::Connect(b) => Self::Connect(b.into()),
            B::LoginVerdict(b) => Self::LoginVerdict(b.into()),
            B::AgentHealth(b) => Self::AgentHealth(b.into()),
        }
    }
}

impl From<model::Body> for pb::event::Body {
    fn from(d: model::Body) -> Self {
        use model::Body as B;
        match d {
            B::LoginAttempt(b) => Self::LoginAttempt(b.into()),
            B::SessionStart(b) => Self::SessionStart(b.into()),
            B::SessionEnd(b) => Self::SessionEnd(b.into()),
            B::Exec(b) => Self::Exec(b.into()),
            B::Connect(b) => Self::Connect(b.into()),
            B::LoginVerdict(b) => Self::LoginVerdict(b.into()),
            B::AgentHealth(b) => Self::AgentHealth(b.into()),
        }
    }
}

impl From<model::LiveItem> for pb::LiveItem {
    fn from(d: model::LiveItem) -> Self {
        use pb::live_item::Item;
        let item = match d {
            model::LiveItem::Stored(s) => Item::Stored(s.into()),
            model::LiveItem::Alert(a) => Item::Alert(a.into()),
            model::LiveItem::Conflict(s) => Item::Conflict(s.into()),
        };
        pb::LiveItem { item: Some(item) }
    }
}

/// A live item from the wire; `None` when it holds nothing this build knows.
impl TryFrom<pb::LiveItem> for model::LiveItem {
    type Error = UnknownItem;

    fn try_from(m: pb::LiveItem) -> Result<Self, UnknownItem> {
        use pb::live_item::Item;
        Ok(match m.item.ok_or(UnknownItem)? {
            Item::Stored(s) => Self::Stored(s.into()),
            Item::Alert(a) => Self::Alert(a.into()),
            Item::Conflict(s) => Self::Conflict(s.into()),
        })
    }
}

/// A `LiveItem` with no item this build knows (a newer server's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownItem;

impl std::fmt::Display for UnknownItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a live item of a kind this build does not know")
    }
}

impl std::error::Error for UnknownItem {}
