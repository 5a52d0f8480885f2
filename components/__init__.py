"""Small constructs shared by more than one stack."""
