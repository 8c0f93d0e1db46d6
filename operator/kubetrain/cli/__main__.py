from kubetrain.cli.main import main

main()
