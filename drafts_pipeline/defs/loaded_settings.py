"""The settings the definitions need while the code location loads (the backfill policy's
batch, the sensor's interval, the first usage day), read once here.

A bad value leaves its default in place so that the location still loads; the tick or run that
needs the value reads the settings again and fails naming the variable.
"""

from drafts_pipeline.settings import Settings

LOADED_SETTINGS = Settings.from_environment()
