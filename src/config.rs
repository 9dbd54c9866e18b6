//! placeholder until the config module lands
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("config")]
pub struct ConfigError;
#[derive(Debug, Default)]
pub struct Config {
    pub default_platforms: Vec<String>,
}
impl Config {
    pub fn discover(_dir: &Path) -> Result<Option<LoadedConfig>, ConfigError> {
        Ok(None)
    }
    pub fn load(_p: &Path) -> Result<LoadedConfig, ConfigError> {
        Err(ConfigError)
    }
    pub fn base_image_for(&self, _i: &str) -> Option<&str> {
        None
    }
}
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
}
impl LoadedConfig {
    pub fn settings_for(&self, _d: &Path) -> BuildSettings {
        BuildSettings::default()
    }
}
#[derive(Debug, Default, Clone)]
pub struct BuildSettings {
    pub dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub flags: Vec<String>,
    pub ldflags: Vec<String>,
}
impl BuildSettings {
    pub fn render(self, _d: &TemplateData) -> Result<BuildSettings, ConfigError> {
        Ok(self)
    }
}
pub struct TemplateData;
impl TemplateData {
    pub fn gather(_d: &Path, _e: Option<i64>) -> Self {
        TemplateData
    }
}
