"""The driver gateway: phone-tracker apps in over HTTP and MQTT, route updates pushed out."""
