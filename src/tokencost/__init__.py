"""tokencost: exact, offline token counts and costs for OpenAI calls."""
