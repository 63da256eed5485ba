"""What a sample says (pure): extracting and comparing answers of every kind (numbers, math, choices, open
text, code), the members and their strategies, prompts. Imports only the base modules and the sandbox."""
