//! `ironhost:policy/config`.

use super::PolicyCtx;
use crate::policy::bindings::wit::config::Host;

impl Host for PolicyCtx {
    fn get(&mut self) -> String {
        self.identity.config_json.clone()
    }
}
