//! count-posts 0.2.0 for the hot-swap tests: counts exactly like 0.1.0, but its
//! state has a new layout (0.1.0's state does not decode as it), so taking over
//! a running window needs its `upgrade`.

use count_posts::CountPosts;
use serde::{Deserialize, Serialize};
use sluice_guest::aggregate::decode_state;
use sluice_guest::{Aggregate, AggregateDescriptor, BatchBuf, Counters, Record, Reject, Window};

pub struct CountPostsV2;

const V1: &str = "count-posts/ids-by-key/1";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    layout: u32,
    posts: count_posts::State,
}

impl Aggregate for CountPostsV2 {
    const DESCRIPTOR: AggregateDescriptor = AggregateDescriptor {
        name: "count-posts",
        version: "0.2.0",
        input_kind: "post",
        output_kind: "post-count",
        state_format: "count-posts/ids-by-key/2",
        upgrades_from: &[V1],
    };
    type State = State;

    fn fold(state: &mut State, record: &Record<'_>, counters: &mut Counters) -> Result<(), Reject> {
        state.layout = 2;
        CountPosts::fold(&mut state.posts, record, counters)
    }

    fn merge(into: &mut State, other: State) {
        CountPosts::merge(&mut into.posts, other.posts);
    }

    fn emit(state: &State, window: Window, rows: &mut BatchBuf) {
        CountPosts::emit(&state.posts, window, rows);
    }

    fn upgrade(format: &str, old: &[u8]) -> Result<State, String> {
        if format != V1 {
            return Err(format!("count-posts 0.2.0 upgrades only from `{V1}`, not `{format}`"));
        }
        Ok(State { layout: 2, posts: decode_state::<CountPosts>(old)? })
    }
}

sluice_guest::export_aggregate!(CountPostsV2);
