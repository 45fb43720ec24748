"""IT help desk bot for Slack and Microsoft Teams."""
