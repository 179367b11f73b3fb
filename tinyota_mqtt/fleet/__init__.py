"""The service, split by flow: each module owns one job and shares the registry and the bus.

    targets.py    which release each device should run now (the policy over store and registry)
    announcer.py  targets → retained announcements, installs, cancels, re-publishing after a reconnect
    reports.py    device messages and what the HTTP side saw → registry → attempt transitions
    hass.py       Home Assistant discovery and entity state
    views.py      the device view the API, the dashboard and `tinyota status` show
    events.py     listeners (the dashboard's live stream) and the attempt log they follow
    publisher.py  the one place that publishes, so retained messages go out only when they change

``tinyota_mqtt/service.py`` is the small façade the HTTP and MQTT layers call.
"""
