"""Configuration: ``load_config`` reads and validates ``config.yaml`` into the frozen model."""

from tinyota_mqtt.config.loader import load_config, parse_config, redact
from tinyota_mqtt.config.model import Config

__all__ = ["Config", "load_config", "parse_config", "redact"]
