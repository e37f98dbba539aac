"""Home Assistant's own view of gridminer's MQTT discovery, for tests/it/r13_ha.rs.

Reads JSON on stdin: {"discovery": [[topic, payload], ...], "states": [state_doc, ...]}.
Each config goes through what Home Assistant does with a discovery message
(homeassistant/components/mqtt/discovery.py: the topic pattern, the abbreviations), then
the MQTT sensor platform's DISCOVERY_SCHEMA, then the sensor integration's tables of
units and state classes per device class (homeassistant/components/sensor/const.py:
DEVICE_CLASS_UNITS, DEVICE_CLASS_STATE_CLASSES), which Home Assistant enforces on the
entity. Every template is rendered with Home Assistant's template engine against each
state document, and the rendered value read as the MQTT sensor reads it
(mqtt/sensor.py `_update_state`: "None" makes a numeric sensor unknown, "" is ignored and
the last value stays).

Writes JSON on stdout: {"ha_version", "errors": [...], "entities": {object_id: {
"deleted", "config", "states": [{"state", "available"}]}}}. "state" is "unknown", the
number as a string, the text, or "ignored" (HA would keep the last value: a frozen
sensor). The test decides what must hold; this script only reports, except that a config
HA would refuse is an error.
"""

import asyncio
import json
import sys

import voluptuous as vol
from homeassistant.components.mqtt import sensor as mqtt_sensor
from homeassistant.components.mqtt.abbreviations import (
    ABBREVIATIONS,
    DEVICE_ABBREVIATIONS,
    ORIGIN_ABBREVIATIONS,
)
from homeassistant.components.mqtt.const import PAYLOAD_NONE
from homeassistant.components.mqtt.discovery import TOPIC_MATCHER
from homeassistant.components.sensor import _numeric_state_expected
from homeassistant.components.sensor.const import (
    DEVICE_CLASS_STATE_CLASSES,
    DEVICE_CLASS_UNITS,
    SensorDeviceClass,
)
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.helpers.template import Template

PREFIX = "homeassistant/"


def expand(payload):
    """The abbreviation expansion of discovery.py, on a copy."""
    out = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    if isinstance(out.get("device"), dict):
        out["device"] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in out["device"].items()}
    if isinstance(out.get("origin"), dict):
        out["origin"] = {ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in out["origin"].items()}
    if isinstance(out.get("availability"), list):
        out["availability"] = [
            {ABBREVIATIONS.get(k, k): v for k, v in a.items()} if isinstance(a, dict) else a
            for a in out["availability"]
        ]
    return out


def check_classes(cfg, where, errors):
    """What the sensor integration accepts for a device class (and what it does not)."""
    dc, sc, unit = cfg.get("device_class"), cfg.get("state_class"), cfg.get("unit_of_measurement")
    if dc is not None:
        dc = SensorDeviceClass(dc)
        units = DEVICE_CLASS_UNITS.get(dc)
        if units is not None and unit not in units:
            errors.append(f"{where}: unit {unit!r} is not one HA accepts for {dc.value}: {sorted(map(str, units), key=str)}")
        classes = DEVICE_CLASS_STATE_CLASSES.get(dc)
        if sc is not None and classes is not None and sc not in classes:
            errors.append(f"{where}: state_class {getattr(sc, 'value', sc)!r} is not one HA accepts for {dc.value}: {sorted(c.value for c in classes)}")


def read_state(rendered, numeric):
    """What the MQTT sensor makes of a rendered value (mqtt/sensor.py `_update_state`)."""
    if numeric:
        if rendered == "":
            return "ignored"
        if rendered == PAYLOAD_NONE:
            return "unknown"
        float(rendered)  # A numeric sensor with a non-number raises ValueError in HA.
        return rendered
    return rendered


async def main():
    request = json.load(sys.stdin)
    hass = HomeAssistant("/tmp")
    errors, entities, unique_ids = [], {}, set()
    for topic, body in request["discovery"]:
        if not topic.startswith(PREFIX) or not (m := TOPIC_MATCHER.match(topic[len(PREFIX):])):
            errors.append(f"{topic}: not a discovery topic HA matches")
            continue
        component, _node, object_id = m.groups()
        if component != "sensor":
            errors.append(f"{topic}: component {component}, expected sensor")
        if not body:
            entities[object_id] = {"deleted": True}
            continue
        raw = expand(json.loads(body))
        try:
            cfg = mqtt_sensor.DISCOVERY_SCHEMA(dict(raw))
        except vol.Invalid as e:
            errors.append(f"{topic}: HA refuses it: {e}")
            continue
        # The schema drops keys it does not know (REMOVE_EXTRA): a misspelled key would
        # pass silently and do nothing, so any dropped key is an error here.
        dropped = set(raw) - set(cfg)
        if dropped:
            errors.append(f"{topic}: keys HA ignores: {sorted(dropped)}")
        for key in ("name", "unique_id", "state_topic", "value_template"):
            if key not in raw:
                errors.append(f"{topic}: no {key}")
        if cfg.get("unique_id") in unique_ids:
            errors.append(f"{topic}: unique_id {cfg.get('unique_id')} twice")
        unique_ids.add(cfg.get("unique_id"))
        check_classes(cfg, topic, errors)
        numeric = _numeric_state_expected(
            cfg.get("device_class"), cfg.get("state_class"), cfg.get("unit_of_measurement"), None
        )
        value = Template(raw["value_template"], hass)
        avail = [
            (a["topic"], a.get("value_template"), a.get("payload_available", "online"))
            for a in raw.get("availability", [])
        ]
        states = []
        for doc in request["states"]:
            payload = json.dumps(doc)
            rendered = value.async_render_with_possible_json_value(payload, "")
            try:
                state = read_state(rendered, numeric)
            except ValueError:
                errors.append(f"{topic}: renders {rendered!r}, not a number, for a numeric sensor")
                state = "error"
            available = True
            for a_topic, a_template, on in avail:
                if a_topic != raw["state_topic"]:
                    continue  # The daemon's own availability topic: online while it runs.
                got = Template(a_template, hass).async_render_with_possible_json_value(payload, "") if a_template else payload
                available = available and got == on
            states.append({"state": state, "available": available})
        entities[object_id] = {"deleted": False, "config": raw, "numeric": numeric, "states": states}
    json.dump({"ha_version": HA_VERSION, "errors": errors, "entities": entities}, sys.stdout)


asyncio.run(main())
