"""Alerts: rules that watch the figures every minute, and the alerts they open, remind about and resolve.

- checks.py: what each kind of rule reads and when it fires (the figures come from reports.selectors and
  reports.attention, like the dashboard's);
- services.py: the only code that changes alerts (evaluate, acknowledge, resolve) and queues their
  messages in the notification outbox;
- selectors.py: open alerts for the dashboard and the sidebar badge;
- defaults.py: the rules the migration creates; tasks.py and schedules.py: the minute's evaluation.
"""
