//! tula's declarative config: model, TOML, validation.
