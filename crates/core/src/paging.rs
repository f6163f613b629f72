//! Page tokens of the lists ordered by a UUIDv7 id: a token is a list's own prefix and the
//! previous page's last id, and a page asks the store for one item more than it shows, to know
//! whether another page follows.

use switchyard_types::Page;
use uuid::Uuid;

use crate::validate::Violations;

/// The id in `token` (a previous page's `next_page_token` of the list whose tokens start with
/// `prefix`); `None` for no token, and a violation of `page_token` for one this server did not
/// issue.
pub(crate) fn token_id(v: &mut Violations, prefix: &str, token: Option<&str>) -> Option<Uuid> {
    let token = token.filter(|t| !t.is_empty())?;
    let id = token
        .strip_prefix(prefix)
        .and_then(|t| t.parse::<Uuid>().ok());
    if id.is_none() {
        v.add("page_token", "is not a token this server issued");
    }
    id
}

/// The page of `items` (fetched with `limit + 1`): at most `limit` of them, and a token naming
/// the last one's id when more follow.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    limit: u32,
    prefix: &str,
    id: impl Fn(&T) -> Uuid,
) -> Page<T> {
    let next_page_token = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|item| format!("{prefix}{}", id(item).simple()))
    } else {
        None
    };
    Page {
        items,
        next_page_token,
    }
}
