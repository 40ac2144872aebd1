"""Small helpers every app may use. Nothing here imports anything of ours."""
