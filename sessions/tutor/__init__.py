"""The tutor dialogue: model chain, circuit breaker, prompts, guardrail and one reply turn."""
