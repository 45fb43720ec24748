"""Connectors to the help desk's own ticket system (Jira Service Management, ServiceNow, a signed
webhook) behind one `TicketSystem` port. docs/itsm.md says how to set each one up.

The bot's own queue stays the source of the conversation; when a connector is configured every
escalation also lives in the ticket system and the two are kept in step both ways:

- outbound (bot -> ITSM): the ticket service calls the mirror (`ItsmSync`), which writes an outbox
  row in the same transaction as the ticket change; the outbox worker delivers it through
  `ItsmSender` with retries, 429/Retry-After and an interrupted-send check against the remote record;
- inbound (ITSM -> bot): authenticated webhooks and a periodic poll of changed records both become
  `RemoteChange`s, applied once each (`itsm_seen`) through the same ticket service the chat uses.
"""
