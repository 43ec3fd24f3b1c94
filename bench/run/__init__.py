"""One bench run: options, validation, the plan, references, trials, executors."""
