print("hidden")
