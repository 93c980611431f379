//! What callbacks learn about the master itself (`master_status` in Buildbot 0.8), and the
//! web UI URLs every status target links to.

use super::BuilderInfo;

/// The master's identity and builders, as of the last (re)config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MasterInfo {
    /// `c['title']`.
    pub title: String,
    /// `c['titleURL']`.
    pub title_url: String,
    /// `c['buildbotURL']`, the web UI's root.
    pub buildbot_url: String,
    pub builders: Vec<BuilderInfo>,
}

/// Web UI URLs use Buildbot 0.9's hash routes: `<buildbotURL>#builders/<builderid>` and
/// `<buildbotURL>#builders/<builderid>/builds/<number>`, with steps and logs below a build
/// (`/steps/<step number>/logs/<log slug>`). Every link to a build is made here.
impl MasterInfo {
    pub fn builder(&self, name: &str) -> Option<&BuilderInfo> {
        self.builders.iter().find(|b| b.name == name)
    }

    /// The root URL, always ending in `/` so routes can be appended.
    pub fn root_url(&self) -> String {
        let mut url = self.buildbot_url.clone();
        if !url.ends_with('/') {
            url.push('/');
        }
        url
    }

    pub fn builder_url(&self, builder_id: i64) -> String {
        format!("{}#builders/{builder_id}", self.root_url())
    }

    pub fn build_url(&self, builder_id: i64, number: i64) -> String {
        format!("{}/builds/{number}", self.builder_url(builder_id))
    }

    pub fn step_url(&self, builder_id: i64, number: i64, step: usize) -> String {
        format!("{}/steps/{step}", self.build_url(builder_id, number))
    }

    pub fn log_url(&self, builder_id: i64, number: i64, step: usize, slug: &str) -> String {
        format!("{}/logs/{slug}", self.step_url(builder_id, number, step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hang_off_the_root_with_exactly_one_slash() {
        for root in ["http://ci.example.org/", "http://ci.example.org"] {
            let master = MasterInfo {
                buildbot_url: root.into(),
                ..MasterInfo::default()
            };
            assert_eq!(
                master.build_url(3, 17),
                "http://ci.example.org/#builders/3/builds/17"
            );
            assert_eq!(
                master.log_url(3, 17, 1, "stdio"),
                "http://ci.example.org/#builders/3/builds/17/steps/1/logs/stdio"
            );
        }
    }
}
