//! The topics of one gateway, all under its prefix (`ecko/{site}/{device}/`
//! by default); `docs/hub-protocol.md` lists them with their QoS and
//! retain flags.

/// Every topic this gateway publishes or subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// `prefix` ends with `/` (the configuration checks it).
    pub fn new(prefix: impl Into<String>) -> Topics {
        Topics {
            prefix: prefix.into(),
        }
    }

    /// Retained: online (version, uptime) or offline (the Last Will).
    pub fn status(&self) -> String {
        format!("{}status", self.prefix)
    }

    /// Endpoint states, queue depths, disk: every interval and on change.
    pub fn health(&self) -> String {
        format!("{}health", self.prefix)
    }

    /// Volumes and latencies per endpoint over the last interval.
    pub fn stats(&self) -> String {
        format!("{}stats", self.prefix)
    }

    /// Durable events, each with its id.
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// The filter the commands arrive on: `cmd/{id}`.
    pub fn commands(&self) -> String {
        format!("{}cmd/+", self.prefix)
    }

    /// The command id of a topic under `cmd/`, if it is one.
    pub fn command_id<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("cmd/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }

    /// Orders for the analyzers behind this gateway, from the hub.
    pub fn orders(&self) -> String {
        format!("{}orders", self.prefix)
    }

    /// Where the answer to command `id` goes.
    pub fn reply(&self, id: &str) -> String {
        format!("{}reply/{id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_is_under_the_prefix_and_a_command_id_is_one_level() {
        let t = Topics::new("ecko/north/lab-1/");
        assert_eq!(t.status(), "ecko/north/lab-1/status");
        assert_eq!(t.commands(), "ecko/north/lab-1/cmd/+");
        assert_eq!(t.command_id("ecko/north/lab-1/cmd/c-42"), Some("c-42"));
        assert_eq!(t.command_id("ecko/north/lab-1/cmd/a/b"), None);
        assert_eq!(t.command_id("ecko/south/lab-1/cmd/c-42"), None);
        assert_eq!(t.reply("c-42"), "ecko/north/lab-1/reply/c-42");
        assert_eq!(t.orders(), "ecko/north/lab-1/orders");
    }
}
