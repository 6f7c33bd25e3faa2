"""The dashboard's Streamlit settings (config.toml), shipped inside the package as `dashboard.streamlit_config`; `ketamine-outcomes serve` passes them as flags."""
