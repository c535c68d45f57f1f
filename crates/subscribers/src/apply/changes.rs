//! Changes as the apply tests write them: one builder each for a creation, an update and a
//! delete, so a test names only what it is about.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::message::{Change, Delete, Fields, Message, NewPlayer, Update};

/// The creation of `player` in `app`, at `offset`: a push subscription with nothing else set.
pub(super) fn create(app: Uuid, player: Uuid, offset: i64) -> Change {
    Change {
        offset,
        message: Message::Create(NewPlayer {
            player_id: player,
            app_id: app,
            device_type: 1,
            identifier: None,
            fields: Fields::default(),
            tags: BTreeMap::new(),
        }),
    }
}

/// The delete of `player` in `app`, at `offset`.
pub(super) fn delete(app: Uuid, player: Uuid, offset: i64) -> Change {
    Change {
        offset,
        message: Message::Delete(Delete {
            player_id: player,
            app_id: app,
        }),
    }
}

/// An update of `player` in `app`, at `offset`, setting `language` and the tags given
/// (`None` deletes one), with the email link request given.
pub(super) fn update(
    app: Uuid,
    player: Uuid,
    offset: i64,
    language: &str,
    tags: &[(&str, Option<&str>)],
    email: Option<&str>,
) -> Change {
    with_fields(
        app,
        player,
        offset,
        Fields {
            language: Some(language.to_owned()),
            ..Fields::default()
        },
        tags,
        email,
    )
}

/// [`update`] with any fields.
pub(super) fn with_fields(
    app: Uuid,
    player: Uuid,
    offset: i64,
    fields: Fields,
    tags: &[(&str, Option<&str>)],
    email: Option<&str>,
) -> Change {
    Change {
        offset,
        message: Message::Update(Update {
            player_id: player,
            app_id: app,
            fields,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
                .collect(),
            email: email.map(str::to_owned),
            parent_player_id: None,
        }),
    }
}
