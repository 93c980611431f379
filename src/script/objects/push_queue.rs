//! The `self` a StatusPush's `serverPushCb` receives: `self.queue:popChunk()` takes the
//! waiting events, `self:queueNextServerPush()` asks for the next call. What the callback
//! did is read back from the shared [`PushChunk`] after it returns.

use std::sync::{Arc, Mutex};

use mlua::{LuaSerdeExt, UserData, Value};

use crate::script::renderable::lua_serialize_options;

/// The events offered to one call, and what the callback did with them.
#[derive(Debug, Default)]
pub struct PushChunk {
    state: Mutex<ChunkState>,
}

#[derive(Debug, Default)]
struct ChunkState {
    events: Vec<serde_json::Value>,
    popped: usize,
    next_queued: bool,
}

impl PushChunk {
    pub fn new(events: Vec<serde_json::Value>) -> Arc<PushChunk> {
        Arc::new(PushChunk {
            state: Mutex::new(ChunkState {
                events,
                ..ChunkState::default()
            }),
        })
    }

    /// How many events the callback popped.
    pub fn popped(&self) -> usize {
        self.lock().popped
    }

    /// Whether it called `queueNextServerPush`.
    pub fn next_queued(&self) -> bool {
        self.lock().next_queued
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChunkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `self`: field `queue`, method `queueNextServerPush`.
pub struct LuaStatusPush(pub Arc<PushChunk>);

/// `self.queue`: method `popChunk([n])`.
struct LuaPushQueue(Arc<PushChunk>);

impl UserData for LuaStatusPush {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("queue", |_, this| Ok(LuaPushQueue(this.0.clone())));
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("queueNextServerPush", |_, this, ()| {
            this.0.lock().next_queued = true;
            Ok(())
        });
    }
}

impl UserData for LuaPushQueue {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        // Buildbot's `popChunk(nbItems=50)`: the oldest events not popped yet, a list.
        methods.add_method("popChunk", |lua, this, count: Option<usize>| {
            let mut state = this.0.lock();
            let from = state.popped;
            let to = (from + count.unwrap_or(50)).min(state.events.len());
            state.popped = to;
            let chunk: Vec<Value> = state.events[from..to]
                .iter()
                .map(|event| lua.to_value_with(event, lua_serialize_options()))
                .collect::<mlua::Result<_>>()?;
            lua.create_sequence_from(chunk)
        });
    }
}
