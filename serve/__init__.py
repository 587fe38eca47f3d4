"""Ray Serve application builders (``serve run serve.app:build ...``); the code lives in jobpred.serving."""
