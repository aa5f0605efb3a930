//! Any command as one type-tagged enum, for the tests that generate or round-trip commands of every
//! kind (the service handles each command as its own type).

use allocation::domain::{Allocate, ChangeBatchQuantity, CreateBatch};
use serde::{Deserialize, Serialize};

/// Any command, as it travels between processes: `{"type": "Allocate", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Command {
    CreateBatch(CreateBatch),
    Allocate(Allocate),
    ChangeBatchQuantity(ChangeBatchQuantity),
}
